"""A sweep directory written by hand: sweep.json and one run directory per trial, shaped like what
`loraqa sweep` writes (config.yaml, summary.json, metrics.json, sweep_trial.json, an adapter file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from safetensors.numpy import save_file

RANKS, RATES, MODULES = ("4", "8", "16"), ("1e-4", "1e-3"), ("attention", "qv")


def score(r: str, lr: str, modules: str, seed: int = 42) -> float:
    """Validation F1 that grows with rank and learning rate, higher for attention: a known best."""
    return 40 + 2 * int(r) + (10 if lr == "1e-3" else 0) + (5 if modules == "attention" else 0) + (seed - 42) * 0.5


def write_sweep(
    root: Path,
    *,
    failed: str = "lora.r=16 training.learning_rate=1e-4 lora.target_modules=qv",
    pruned: str = "lora.r=4 training.learning_rate=1e-4 lora.target_modules=qv",
    with_summary: bool = True,
    seeds: tuple[int, ...] = (42,),
) -> Path:
    root.mkdir(parents=True)
    failures = []
    for modules in MODULES:
        for r in RANKS:
            for lr in RATES:
                for seed in seeds:
                    config = f"lora.r={r} training.learning_rate={lr} lora.target_modules={modules}"
                    cell = f"{config} seed={seed}"
                    if config == failed:
                        failures.append(
                            {"trial": 99, "cell": cell, "error": "lora.r: out of memory (CUDA)", "retried": False}
                        )
                        continue
                    state = "PRUNED" if config == pruned else "COMPLETE"
                    _write_trial(
                        root / f"r={r}_learning_rate={lr}_target_modules={modules}_seed={seed}",
                        cell,
                        r,
                        lr,
                        modules,
                        seed,
                        state,
                    )
    if with_summary:
        (root / "sweep.json").write_text(
            json.dumps(
                {
                    "study": root.name,
                    "metric": "validation f1",
                    "direction": "maximize",
                    "failed": failures,
                    "pruned": [],
                }
            )
        )
    else:
        (root / "study.db").write_bytes(b"")  # a sweep still running: only its study and its runs
    return root


def _write_trial(path: Path, cell: str, r: str, lr: str, modules: str, seed: int, state: str) -> None:
    path.mkdir()
    value = score(r, lr, modules, seed)
    config = {
        "name": path.name,
        "output_dir": str(path),
        "model": {"name": "minilm-l6"},
        "lora": {"r": int(r), "target_modules": modules},
        "training": {"learning_rate": float(lr), "seed": seed},
    }
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    test = {"exact_match": value - 20, "f1": value - 5, "rougeL": value - 6, "count": 4}
    (path / "metrics.json").write_text(json.dumps(test))
    (path / "summary.json").write_text(
        json.dumps({"run_dir": str(path), "validation": {"f1": value}, "adapter": test, "train_seconds": 1.0})
    )
    (path / "adapter").mkdir()
    layers = 2 * (4 if modules == "attention" else 2)  # LoRA A and B per module per layer
    save_file(
        {f"w{i}": np.zeros((int(r), 32), dtype=np.float32) for i in range(layers)},
        str(path / "adapter" / "adapter_model.safetensors"),
    )
    record = {
        "trial": 0,
        "cell": cell,
        "state": state,
        "validation_f1": value,
        "validation": {"f1": value},
        "test": test,
        "run_dir": str(path),
    }
    if state == "PRUNED":
        record["pruned_at_step"] = 20
    (path / "sweep_trial.json").write_text(json.dumps(record))
