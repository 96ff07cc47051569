"""The training peak memory a run records (training/memory.py): measured from the start of
training, in MiB, with a kind that says what was measured; under torchrun the largest rank."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from run_helpers import tiny_config

from loraqa.pipeline import run_training
from loraqa.training import memory
from loraqa.training.memory import MIB, PeakMemoryMeter, process_peak_rss

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh process: its earlier peaks are known, not whatever the tests before left.
CPU_WINDOWS = """
import json, mmap, time
import torch
from loraqa.training import memory
from loraqa.training.memory import MIB, PeakMemoryMeter, current_rss, process_peak_rss

def hold(size, seconds=0.0):  # size bytes resident for a while, then back to the kernel (no allocator keeps them)
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    time.sleep(seconds)
    block.close()

out = {}
meter = PeakMemoryMeter(torch.device("cpu"))  # 1: training raises the process's peak: exact
meter.start()
hold(process_peak_rss() - current_rss() + 200 * MIB)
out["raised"] = [meter.stop(), meter.kind, process_peak_rss()]
meter = PeakMemoryMeter(torch.device("cpu"))  # 2: training stays under that peak: sampled, not the old peak
meter.start()
base = current_rss()
hold(100 * MIB, seconds=0.1)
out["under"] = [meter.stop(), meter.kind, base, process_peak_rss()]
memory._STATM = "/nonexistent/statm"  # 3: no /proc to sample (macOS): the process's peak, said so
meter = PeakMemoryMeter(torch.device("cpu"))
meter.start()
out["no_proc"] = [meter.stop(), meter.kind, process_peak_rss()]
print(json.dumps(out))
"""


def test_a_training_run_records_a_positive_peak_of_its_device_kind(tiny_model_dir, qa_files, tmp_path):
    config = tiny_config(tiny_model_dir("bert"), qa_files, tmp_path / "run", "evaluation.baseline=false")
    summary = run_training(config)
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["peak_memory_kind"] == summary["peak_memory_kind"]
    assert saved["peak_memory_mib"] == summary["peak_memory_mib"] > 0
    if config.training.device == "cuda":
        assert saved["peak_memory_kind"] == "cuda_allocated"
    else:  # resident memory of a process holding torch: tens of MiB at least, at most the process's peak
        assert saved["peak_memory_kind"] in ("cpu_rss", "cpu_rss_sampled")
        assert 20 < saved["peak_memory_mib"] <= process_peak_rss() / MIB + 0.1
    assert "peak_memory_per_rank_mib" not in saved  # one process


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux's /proc")
def test_cpu_peak_is_training_s_own_and_the_kind_says_how_it_was_measured():
    done = subprocess.run(
        [sys.executable, "-c", CPU_WINDOWS],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.splitlines()[-1])
    peak, kind, process_peak = out["raised"]
    assert kind == "cpu_rss" and peak == process_peak  # the new process peak came during training
    peak, kind, base, process_peak = out["under"]
    assert kind == "cpu_rss_sampled"
    assert base + 90 * MIB <= peak < process_peak - 50 * MIB  # saw the held 100 MiB, not the earlier 200 MiB
    peak, kind, process_peak = out["no_proc"]
    assert kind == "cpu_rss_process" and peak == process_peak  # an upper bound, and named as one


@pytest.mark.parametrize(("platform", "bytes_"), [("linux", 2048 * 1024), ("darwin", 2048)])
def test_ru_maxrss_is_kib_on_linux_and_bytes_on_macos(monkeypatch, platform, bytes_):
    usage = resource.struct_rusage((0, 0, 2048) + (0,) * 13)  # ru_maxrss is the third field
    monkeypatch.setattr(memory.sys, "platform", platform)
    monkeypatch.setattr(memory.resource, "getrusage", lambda who: usage)
    assert process_peak_rss() == bytes_


def test_mps_has_no_peak_counter_so_every_step_end_is_sampled(monkeypatch):
    driver = {"bytes": 100 * MIB}
    monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: driver["bytes"])
    meter = PeakMemoryMeter(torch.device("mps"))
    meter.start()
    for held in (700, 300, 200):  # what the driver holds at each step's end; 200 at the end
        driver["bytes"] = held * MIB
        meter.on_step_end(None, None, None)
    assert meter.record() == {"peak_memory_mib": 700.0, "peak_memory_kind": "mps_driver"}


def test_under_torchrun_the_largest_rank_is_recorded_with_every_rank(monkeypatch):
    meter = PeakMemoryMeter(torch.device("cpu"))
    meter.start()
    mine = meter.stop()
    other = (mine + 512 * MIB, "cpu_rss_sampled")
    monkeypatch.setattr(memory.distributed, "gather_objects", lambda value: [value, other])
    recorded = meter.record()
    assert recorded["peak_memory_mib"] == round(other[0] / MIB, 1) and recorded["peak_memory_kind"] == other[1]
    assert recorded["peak_memory_per_rank_mib"] == [round(mine / MIB, 1), round(other[0] / MIB, 1)]


def test_stopping_twice_measures_once_and_ends_the_sampler():
    meter = PeakMemoryMeter(torch.device("cpu"))
    meter.start()
    sampler = meter._sampler
    first = meter.stop()
    assert meter.stop() == first
    assert sampler is None or not sampler._thread.is_alive()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_peak_is_reset_at_start_and_counts_tensors_allocated_during_training():
    device = torch.device("cuda", torch.cuda.current_device())
    earlier = torch.empty(256 * MIB, dtype=torch.uint8, device=device)
    del earlier
    meter = PeakMemoryMeter(device)
    meter.start()
    before = torch.cuda.memory_allocated(device)
    during = torch.empty(64 * MIB, dtype=torch.uint8, device=device)
    del during
    peak = meter.stop()
    assert before + 64 * MIB <= peak < before + 256 * MIB  # the freed 256 MiB before start left no peak
    assert meter.kind == "cuda_allocated"
