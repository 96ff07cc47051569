"""`bench/speed.py --ddp N`: the same loraqa training as 1 process x N threads and as N processes
(torchrun, gloo) x 1 thread, examples/s of each.

    .venv/bin/python bench/speed.py --ddp 2              # minilm-l6, 200 steps at global batch 16
    .venv/bin/python bench/speed.py --ddp 2 --ddp-steps 5   # smoke check (~2 min with start-up)

On a CPU, expect parity (the same cores do the same FLOPs, plus gloo's all-reduce of the LoRA
gradients); the point is that the DDP path is the one a GPU cluster runs. Both runs have the same
global batch (per_device x processes = 16) and train the same examples, so their losses agree.
Writes bench/results/speed-ddp-<date>.json (speed-ddp-<date>-smoke.json under 50 steps, which is a
check that the path runs, not a measurement), stamped with the commit and command (bench/record.py),
and prints a line each.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from loraqa.runs.files import SUMMARY_FILE

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 16
SMOKE_STEPS = 50  # fewer steps than this measure start-up more than training: the file says "smoke"


def _train(processes: int, threads: int, steps: int, model: str, out: Path) -> dict:
    per_device = GLOBAL_BATCH // processes
    args = [
        "train",
        "minilm-l6-squad",
        f"model.name={model}",
        f"output_dir={out}",
        f"training.max_steps={steps}",
        f"training.per_device_train_batch_size={per_device}",
        "training.save_strategy=no",
        "evaluation.baseline=false",
        "data.test_samples=16",
        "data.train_samples=2000",
        f"training.torch_threads={threads}",
        "training.device=cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    if processes == 1:
        command = [sys.executable, "-m", "loraqa", *args]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(processes),
            "-m",
            "loraqa",
            *args,
        ]
    subprocess.run(command, env=env, cwd=ROOT, check=True)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    examples = steps * GLOBAL_BATCH
    return {
        "processes": processes,
        "threads_each": threads,
        "per_device_train_batch_size": per_device,
        "steps": steps,
        "train_seconds": summary["train_seconds"],
        "train_loss": summary["train_loss"],
        "examples_per_second": round(examples / summary["train_seconds"], 2),
    }


def run(
    processes: int, steps: int, model: str = "minilm-l6", out: str | None = None, argv: list[str] | None = None
) -> dict:
    """Train both ways, print a line each, write the stamped results file; `argv`: the command, recorded."""
    from record import stamped  # bench/record.py, next to this file

    with tempfile.TemporaryDirectory() as tmp:
        single = _train(1, processes, steps, model, Path(tmp) / "single")
        ddp = _train(processes, 1, steps, model, Path(tmp) / "ddp")
    result = {
        "model": model,
        "global_batch": GLOBAL_BATCH,
        "smoke": steps < SMOKE_STEPS,
        "single_process": single,
        "ddp": ddp,
        "ddp_over_single": round(ddp["examples_per_second"] / single["examples_per_second"], 3),
    }
    for row in (single, ddp):
        print(
            f"{row['processes']} process(es) x {row['threads_each']} thread(s): {row['examples_per_second']} "
            f"examples/s (loss {row['train_loss']:.4f})"
        )
    suffix = "-smoke" if result["smoke"] else ""
    target = Path(out) if out else ROOT / "bench" / "results" / f"speed-ddp-{datetime.date.today()}{suffix}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    result = stamped(result, argv if argv is not None else sys.argv)
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {target}")
    return result
