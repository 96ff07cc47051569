"""The peak memory of a run's training, as summary.json records it: `peak_memory_mib` (MiB, 2**20
bytes) and `peak_memory_kind`, which says what the number measures:

| kind | measured | exact? |
|---|---|---|
| `cuda_allocated` | `torch.cuda.max_memory_allocated` on the run's GPU, its peak reset when training starts: tensors (weights, activations, gradients, optimizer state), not the caching allocator's unused reserve nor the CUDA context, so `nvidia-smi` shows more | exact |
| `mps_driver` | `torch.mps.driver_allocated_memory()` (all the Metal driver holds for the process, its cache included) at training start, each optimizer step's end and training end: MPS keeps no peak counter | a lower bound: a peak inside a step is missed |
| `cpu_rss` | the process's resident memory (weights, activations, optimizer state, Python and torch's own code): training raised the process's peak RSS (`getrusage` `ru_maxrss`), so that peak was reached during training | exact |
| `cpu_rss_sampled` | training stayed under a peak the process reached before it (loading, the baseline evaluation, an earlier run of `loraqa compare` or the Python API in the same process): the largest RSS read from `/proc/self/statm` every 10 ms during training | a lower bound, within a sampling interval's change |
| `cpu_rss_process` | as `cpu_rss_sampled` where `/proc` is absent (macOS): the process's peak, which came before training | an upper bound |

The kernel's peak counters are read, never reset: a benchmark or a parent process that reads the
process's `ru_maxrss` or `VmHWM` still sees the whole process's peak.

"Training" is the `Trainer.train` call: its in-training validation evaluations count, the final
test evaluation does not. A resumed run measures only the part it trained; a run resumed after
its last step trained nothing and records no peak. Under torchrun every rank measures its own
process (its GPU) and the summary records the largest, `peak_memory_per_rank_mib` listing all.

transformers' own `TrainerMemoryTracker` (`skip_memory_metrics=False`) is not used: it reports
deltas over each stage rather than the peak, needs psutil, and samples CPU memory from a thread
that spins without sleeping, taking a core from training on a small machine.
"""

from __future__ import annotations

import os
import resource
import sys
import threading

import torch
from transformers import TrainerCallback

from loraqa import distributed

MIB = 2**20
SAMPLE_SECONDS = 0.01  # RSS sampling interval: a step of a real model lasts far longer
_STATM = "/proc/self/statm"  # "size resident shared ...", in pages


class PeakMemoryMeter(TrainerCallback):
    """Measures one training's peak memory on `device`: `start()` just before `Trainer.train`,
    `record()` just after (on every rank: under torchrun it gathers). Pass it to the Trainer as a
    callback so MPS, which has no peak counter, is sampled at each step's end."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind: str | None = None
        self._sampled = 0  # bytes: the largest sample (MPS, or CPU RSS)
        self._process_peak_before = 0
        self._sampler: _RssSampler | None = None
        self._peak: int | None = None  # bytes, once stopped

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_allocated"
        elif self.device.type == "mps":
            self.kind, self._sampled = "mps_driver", torch.mps.driver_allocated_memory()
        else:
            self.kind, self._process_peak_before = "cpu_rss", process_peak_rss()
            self._sampler = _RssSampler.start() if os.path.exists(_STATM) else None

    def on_step_end(self, args, state, control, **kwargs):
        if self.kind == "mps_driver":
            self._sampled = max(self._sampled, torch.mps.driver_allocated_memory())

    def stop(self) -> int:
        """End the measurement (idempotent; call it even when training raised, to end the sampler):
        this process's peak in bytes since `start()`; `kind` is then final (see the module's table)."""
        if self.kind is None:
            raise RuntimeError("PeakMemoryMeter stopped before start()")
        if self._peak is None:
            self._peak = self._measure()
        return self._peak

    def record(self) -> dict:
        """Stop, and return the summary.json entries; the largest over the ranks under torchrun."""
        gathered = distributed.gather_objects((self.stop(), self.kind))  # [ddp] every rank calls it
        per_rank = [round(peak / MIB, 1) for peak, _ in gathered]
        largest = max(range(len(gathered)), key=lambda i: gathered[i][0])
        entries: dict = {"peak_memory_mib": per_rank[largest], "peak_memory_kind": gathered[largest][1]}
        if len(per_rank) > 1:
            entries["peak_memory_per_rank_mib"] = per_rank
        return entries

    def _measure(self) -> int:
        if self.kind == "cuda_allocated":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device)
        if self.kind == "mps_driver":
            return max(self._sampled, torch.mps.driver_allocated_memory())
        if self._sampler is not None:
            self._sampled, self._sampler = max(self._sampled, self._sampler.stop()), None
        after = process_peak_rss()
        if after > self._process_peak_before:
            self.kind = "cpu_rss"  # the process's peak rose during training: that is training's peak
            return after
        self.kind = "cpu_rss_sampled" if self._sampled else "cpu_rss_process"
        return self._sampled or after


def process_peak_rss() -> int:
    """Bytes: the process's peak RSS since it started. ru_maxrss is in KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss() -> int:
    """Bytes resident now, from /proc/self/statm (Linux)."""
    with open(_STATM, "rb") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _RssSampler:
    """A daemon thread that reads the RSS every SAMPLE_SECONDS (a few microseconds each) and keeps the largest."""

    def __init__(self):
        self.largest = current_rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loraqa-rss-sampler", daemon=True)

    @classmethod
    def start(cls) -> _RssSampler:
        sampler = cls()
        sampler._thread.start()
        return sampler

    def _run(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            self.largest = max(self.largest, current_rss())

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return max(self.largest, current_rss())
