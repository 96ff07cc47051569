"""Run directories written by hand (tiny JSON files), shaped like what `loraqa train` / `eval` write."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml


def config(name: str, r: int = 8, lr: float = 1e-3) -> dict:
    return {
        "name": name,
        "output_dir": f"runs/{name}",
        "model": {"name": "minilm-l6", "max_seq_length": 256},
        "lora": {"r": r, "lora_alpha": 2 * r, "target_modules": "attention_mlp"},
        "training": {"learning_rate": lr, "max_steps": 40, "eval_strategy": "steps"},
        "data": {"train_samples": 64, "test_samples": 4},
        "generation": {"decoding": "greedy"},
    }


def train_log(steps: int = 40, start: float = 5.0, eval_every: int = 10) -> list[dict]:
    """transformers' log_history: loss every 2 steps, an evaluation every eval_every, a closing summary."""
    log = []
    for step in range(2, steps + 1, 2):
        log.append(
            {
                "loss": start * math.exp(-step / 25) + 0.3 * (step % 4 == 0),
                "grad_norm": 1.0,
                "learning_rate": 1e-3,
                "epoch": step / 10,
                "step": step,
            }
        )
        if step % eval_every == 0:
            log.append(
                {
                    "eval_loss": start * math.exp(-step / 30),
                    "eval_f1": 10 + step,
                    "eval_exact_match": step / 2,
                    "epoch": step / 10,
                    "step": step,
                }
            )
    log.append({"train_loss": 3.0, "train_runtime": 12.0, "epoch": steps / 10, "step": steps})
    return log


PREDICTIONS = [
    {
        "id": "q1",
        "question": "Who wrote <b>Roots</b>?",
        "gold_answers": ["Alex Haley", "Alex Haley"],
        "prediction": "Haley",
        "exact_match": 0.0,
        "f1": 0.67,
        "failure": "partial",
    },
    {
        "id": "q2",
        "question": "Where did the war | break out?",
        "gold_answers": ["Algeria"],
        "prediction": "<script>alert(1)</script>",
        "exact_match": 0.0,
        "f1": 0.0,
        "failure": "wrong_span",
    },
    {
        "id": "q3",
        "question": "What year?",
        "gold_answers": ["1800"],
        "prediction": "1800",
        "exact_match": 1.0,
        "f1": 1.0,
        "failure": None,
    },
    {
        "id": "q4",
        "question": "How large are the filaments?",
        "gold_answers": ["5 nm"],
        "prediction": "",
        "exact_match": 0.0,
        "f1": 0.0,
        "failure": "empty",
    },
]


def metrics(em: float, f1: float, **extra) -> dict:
    return {
        "exact_match": em,
        "f1": f1,
        "rouge1": f1,
        "rouge2": f1 / 2,
        "rougeL": f1 - 1,
        "count": 4,
        "failures": {"partial": 1, "wrong_span": 1, "empty": 1},
        "seconds": 1.5,
        **extra,
    }


def write_evaluation(directory: Path, values: dict, rows: list[dict] = PREDICTIONS) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.json").write_text(json.dumps(values))
    (directory / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_run(
    path: Path,
    *,
    r: int = 8,
    baseline: bool = True,
    log: bool = True,
    finished: bool = True,
    summary_extra: dict | None = None,
    decodings: tuple[str, ...] = (),
) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config(path.name, r)))
    if log:
        (path / "train_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in train_log(start=4 + r / 8)))
    if baseline:
        write_evaluation(path / "baseline", metrics(10.0, 20.0, adapter=None))
    if finished:
        write_evaluation(path, metrics(40.0, 55.0 + r, adapter=str(path / "adapter")))
        (path / "adapter").mkdir()
        (path / "adapter" / "loraqa.json").write_text(
            json.dumps({"loraqa_version": "0.0.9", "formulation": "extractive"})
        )
        summary = {
            "run_dir": str(path),
            "model": "minilm-l6",
            "train_seconds": 12.3,
            "total_seconds": 30.0,
            **(summary_extra or {}),
        }
        (path / "summary.json").write_text(json.dumps(summary))
    for decoding in decodings:
        write_evaluation(path / "eval" / decoding, metrics(41.0, 56.0, adapter="x", decoding=decoding))
    return path
