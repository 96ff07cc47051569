"""The Python half of scripts/gpu-check.sh: train offline models on the GPU with `precision: auto`,
compare their answers with a CPU evaluation of the same adapter, and write a results file.

    python scripts/gpu_check.py                       # on a CUDA GPU: minilm-l6, smollm2-135m, ~2 min each
    python scripts/gpu_check.py --device cpu --dry-run   # a few steps on the CPU: checks this script itself

For each model: `loraqa train` (the shipped config, capped at --seconds of training by max_steps
measured from a short warm-up run), then `loraqa eval --adapter` on the CPU on the same questions,
and the share of questions whose answers agree (bf16 on the GPU vs fp32 on the CPU: a few
near-ties may flip; a low rate means the GPU path is wrong). Reported: examples/s, tokens/s (from
Trainer's FLOP count: total_flos = 6 x parameters x tokens), MFU against the GPU's dense bf16 peak,
peak GPU memory, the git commit. Writes bench/results/gpu-check-<date>.json (or --out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# Dense bf16 tensor-core peaks, TFLOP/s (vendor data sheets, no sparsity).
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "A10G": 125.0, "L4": 121.0, "L40S": 362.0,
                    "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0, "T4": 65.0}  # fmt: skip

MODELS = {"minilm-l6": "minilm-l6-squad", "smollm2-135m": "smollm2-135m-squad"}


def peak_tflops(name: str) -> float | None:
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


class _Tee:
    """stderr that is also kept, to read loraqa's "trainable parameters X of Y" line."""

    def __init__(self, stream):
        self.stream, self.text = stream, []

    def write(self, text):
        self.text.append(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()

    def close(self):  # a logging handler made meanwhile may hold it: closing stays with the real stream
        pass

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _loraqa(args: list[str]) -> str:
    """`loraqa ARGS` in this process (so peak GPU memory is measured here); its stderr."""
    import contextlib

    from loraqa.cli import main

    tee = _Tee(sys.stderr)
    with contextlib.redirect_stderr(tee):
        code = main(args)
    if code != 0:
        raise SystemExit(f"gpu_check: loraqa {' '.join(args)} failed ({code})")
    return "".join(tee.text)


def check_model(model: str, device: str, seconds: float, dry_run: bool, work: Path) -> dict:
    import torch

    config = MODELS[model]
    common = [f"model.name={model}", f"training.device={device}", "training.precision=auto",
              "evaluation.baseline=false", "training.save_strategy=no"]  # fmt: skip
    sizes = ["data.train_samples=8", "data.test_samples=4", "model.max_seq_length=128", "model.doc_stride=64",
             "training.per_device_train_batch_size=2", "evaluation.batch_size=4"] if dry_run else \
        ["data.train_samples=4000", "data.test_samples=200"]  # fmt: skip
    steps = 2
    if not dry_run:  # a short warm-up run measures the step time that --seconds is divided by
        warm = work / f"{model}-warmup"
        _loraqa(["train", config, *common, *sizes, "training.max_steps=5", f"output_dir={warm}"])
        per_step = json.loads((warm / "summary.json").read_text())["train_seconds"] / 5
        steps = max(10, int(seconds / max(per_step, 1e-3)))
    run = work / model
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    said = _loraqa(["train", config, *common, *sizes, f"training.max_steps={steps}", f"output_dir={run}"])
    wall = time.perf_counter() - started
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    final = next(e for e in reversed(log) if "train_runtime" in e)
    cpu_eval = work / f"{model}-cpu-eval"
    _loraqa(["eval", config, *sizes, "--adapter", str(run / "adapter"), "training.device=cpu",
             "training.precision=fp32", "--output", str(cpu_eval)])  # fmt: skip
    on_device = json.loads((run / "predictions.json").read_text())
    on_cpu = json.loads((cpu_eval / "predictions.json").read_text())
    agree = sum(on_device[k] == on_cpu.get(k) for k in on_device) / max(len(on_device), 1)
    metrics = json.loads((run / "metrics.json").read_text())
    counted = re.search(r"trainable parameters [\d,]+ of ([\d,]+)", said)
    params = int(counted[1].replace(",", "")) if counted else None
    flops_per_second = final["total_flos"] / final["train_runtime"]
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    peak = peak_tflops(name)
    return {
        "model": model, "steps": steps, "device": json.loads((run / "summary.json").read_text())["device"],
        "examples_per_second": final["train_samples_per_second"],
        "tokens_per_second": round(flops_per_second / (6 * params), 1) if params else None,
        "mfu": round(flops_per_second / (peak * 1e12), 4) if peak else None,
        "bf16_peak_tflops": peak, "train_runtime": final["train_runtime"], "wall_seconds": round(wall, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
        "f1": metrics["f1"], "exact_match": metrics["exact_match"], "cpu_agreement": round(agree, 4),
    }  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--seconds", type=float, default=120.0, help="training seconds per model")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--dry-run", action="store_true", help="a few steps on little data: checks the script")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit,
              "device": args.device, "dry_run": args.dry_run, "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None, "models": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            result["models"].append(check_model(model, args.device, args.seconds, args.dry_run, Path(tmp)))
            print(json.dumps(result["models"][-1]), flush=True)
    target = Path(args.out) if args.out else ROOT / "bench" / "results" / f"gpu-check-{datetime.date.today()}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(f"gpu_check: written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
