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

QLoRA (`qlora` in the results, --qlora-steps, 0 skips it): each model trains a fixed few steps with
`lora.quantize_base=4bit` (bitsandbytes; gpu-check.sh installs it), `loraqa merge` writes it into
the full-precision base, and the merged model's answers are compared with the unmerged adapter's
on that same full-precision base (`merged_agreement`: 1.0 expected; fp32 answers, TF32 matmuls may
flip a near-tie). The 4-bit model's own answers (the run's test evaluation) are compared too, as
information (`quantized_agreement`: merging into fp weights is expected to move a few answers).
On the CPU (--dry-run) the same steps run with quantize_base=none, and `cpu_refuses_4bit` records
that `loraqa train ... lora.quantize_base=4bit` stops with one line (exit 2) there.
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
sys.path.insert(0, str(ROOT / "bench"))  # bench/record.py: the commit, dirty flag and command of the results

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


def _loraqa_status(args: list[str]) -> tuple[int, str]:
    """`loraqa ARGS` in this process (so peak GPU memory is measured here): its exit status and stderr."""
    import contextlib

    from loraqa.cli import main

    tee = _Tee(sys.stderr)
    with contextlib.redirect_stderr(tee):
        code = main(args)
    return code, "".join(tee.text)


def _loraqa(args: list[str]) -> str:
    """`loraqa ARGS`, which must succeed; its stderr."""
    code, said = _loraqa_status(args)
    if code != 0:
        raise SystemExit(f"gpu_check: loraqa {' '.join(args)} failed ({code})")
    return said


def _sizes(dry_run: bool) -> list[str]:
    if dry_run:
        return ["data.train_samples=8", "data.test_samples=4", "model.max_seq_length=128", "model.doc_stride=64",
                "training.per_device_train_batch_size=2", "evaluation.batch_size=4"]  # fmt: skip
    return ["data.train_samples=4000", "data.test_samples=200"]


def _agreement(a: dict, b: dict) -> float:
    return round(sum(a[k] == b.get(k) for k in a) / max(len(a), 1), 4)


def check_model(model: str, device: str, seconds: float, dry_run: bool, work: Path) -> dict:
    import torch

    config = MODELS[model]
    common = [f"model.name={model}", f"training.device={device}", "training.precision=auto",
              "evaluation.baseline=false", "training.save_strategy=no"]  # fmt: skip
    sizes = _sizes(dry_run)
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
    agree = _agreement(on_device, on_cpu)
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
        "f1": metrics["f1"], "exact_match": metrics["exact_match"], "cpu_agreement": agree,
    }  # fmt: skip


def _unmerged_answers(config_name: str, adapter: Path, device: str, sizes: list[str]) -> dict:
    """The adapter on its full-precision base, not merged: {id: answer} on the run's test questions."""
    from loraqa.config.loader import load_config
    from loraqa.data.prepare import load_test
    from loraqa.device import plan_device
    from loraqa.evaluation.runner import evaluate_records, predict_settings
    from loraqa.inference.ready import load_ready_model, model_config_for_adapter
    from loraqa.models.loading import inspect_base

    config = load_config(config_name, [*sizes, f"training.device={device}"])
    keys = frozenset(item.partition("=")[0][len("model.") :] for item in sizes if item.startswith("model."))
    model_config = model_config_for_adapter(str(adapter), config.model, None, keys)
    spec = inspect_base(model_config)
    plan = plan_device(device, "auto", spec.model_type)
    ready = load_ready_model(model_config, plan, str(adapter), merge=False, spec=spec)
    records, version_2 = load_test(config.data)
    outcome = evaluate_records(spec.formulation, ready.model, ready.tokenizer, records,
                               predict_settings(config, version_2), label="unmerged")  # fmt: skip
    return {row["id"]: row["prediction"] for row in outcome.rows}


def check_qlora(model: str, device: str, steps: int, dry_run: bool, work: Path) -> dict:
    """Train on a 4-bit base, merge into the full-precision base, compare answers (see the module doc)."""
    import importlib.util

    import torch

    config = MODELS[model]
    quantize = "4bit" if device == "cuda" else "none"
    if quantize != "none" and importlib.util.find_spec("bitsandbytes") is None:
        return {"model": model, "skipped": "bitsandbytes is not installed (pip install bitsandbytes)"}
    # Fewer questions than the speed check: 30 steps need at most 30 x 16 examples, and each test
    # question is answered three times (4-bit, merged, unmerged).
    sizes = _sizes(dry_run) if dry_run else ["data.train_samples=1000", "data.test_samples=100"]
    common = [f"model.name={model}", f"training.device={device}", "training.precision=auto",
              "evaluation.baseline=false", "training.save_strategy=no", *sizes]  # fmt: skip
    row: dict = {"model": model, "quantize_base": quantize, "steps": steps}
    if device == "cpu":  # refused before anything loads, with one line
        code, said = _loraqa_status(["train", config, *common, "lora.quantize_base=4bit",
                                     f"output_dir={work / (model + '-refused')}"])  # fmt: skip
        errors = [line for line in said.splitlines() if line.startswith("loraqa: error:")]
        row["cpu_refuses_4bit"] = code == 2 and len(errors) == 1 and "lora.quantize_base" in errors[0]
    run, merged = work / f"{model}-qlora", work / f"{model}-qlora-merged"
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    _loraqa(["train", config, *common, f"lora.quantize_base={quantize}", f"training.max_steps={steps}",
             f"output_dir={run}"])  # fmt: skip
    row["train_wall_seconds"] = round(time.perf_counter() - started, 1)
    if device == "cuda":
        row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    said = _loraqa(["merge", "--adapter", str(run / "adapter"), "--output", str(merged), f"training.device={device}"])
    row["merge_notice"] = "merging into the full-precision base" in said
    merged_eval = work / f"{model}-qlora-merged-eval"
    _loraqa(["eval", config, *sizes, f"model.name={merged}", f"training.device={device}", "--output", str(merged_eval)])
    on_merged = json.loads((merged_eval / "predictions.json").read_text())
    unmerged = _unmerged_answers(config, run / "adapter", device, sizes)
    quantized = json.loads((run / "predictions.json").read_text())  # the run's own test evaluation, unmerged
    row.update(questions=len(on_merged), merged_agreement=_agreement(unmerged, on_merged),
               quantized_agreement=_agreement(quantized, on_merged),
               f1_quantized=json.loads((run / "metrics.json").read_text())["f1"],
               f1_merged=json.loads((merged_eval / "metrics.json").read_text())["f1"])  # fmt: skip
    row["ok"] = row["merged_agreement"] == 1.0 and (quantize == "none" or row["merge_notice"])
    if device == "cpu":
        row["ok"] = row["ok"] and row["cpu_refuses_4bit"]
    return row


def _write(result: dict, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--seconds", type=float, default=120.0, help="training seconds per model")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--qlora-steps", type=int, default=30, help="training steps of each QLoRA check (0: skip it)")
    p.add_argument("--dry-run", action="store_true", help="a few steps on little data: checks the script")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit,
              "device": args.device, "dry_run": args.dry_run, "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None, "models": []}  # fmt: skip
    from record import stamped

    result = stamped(result, sys.argv if argv is None else [sys.argv[0], *argv])
    result["commit"] = commit  # kept next to record's git_commit: older readers look for it
    target = Path(args.out) if args.out else ROOT / "bench" / "results" / f"gpu-check-{datetime.date.today()}.json"
    models = args.models.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            result["models"].append(check_model(model, args.device, args.seconds, args.dry_run, Path(tmp)))
            print(json.dumps(result["models"][-1]), flush=True)
            _write(result, target)  # after each row: a later failure or timeout keeps what was measured
        result["qlora"] = []
        for model in models if args.qlora_steps > 0 else []:
            steps = 2 if args.dry_run else args.qlora_steps
            try:
                row = check_qlora(model, args.device, steps, args.dry_run, Path(tmp))
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - recorded, the other model still runs
                row = {"model": model, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
            result["qlora"].append(row)
            print(json.dumps(row), flush=True)
            if row.get("ok") is False:
                print(f"gpu_check: QLORA CHECK FAILED for {model} (see the row above)", file=sys.stderr)
            _write(result, target)
    _write(result, target)
    print(f"gpu_check: written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
