"""The SQuAD v2 no-answer threshold an adapter carries, in its `loraqa.json` (`no_answer_threshold`).

Written after training's evaluation (`pipeline/evaluate_phase.py`: chosen on the validation split by
`metrics.abstention.best_threshold`), read wherever the adapter answers through
`evaluation.runner.predict_settings` (eval, predict, serve, the Python API) when
`evaluation.null_score_diff_threshold` is `auto`; a number the user gives wins.
"""

from __future__ import annotations

import json
from pathlib import Path

from loraqa.atomic import write_json_atomic
from loraqa.lora.adapter_files import META_FILE, read_threshold
from loraqa.metrics.abstention import ThresholdChoice


def write_threshold(adapter_dir: str | Path, choice: ThresholdChoice, chosen_on: str, questions: int) -> None:
    """Add the chosen threshold to the adapter's loraqa.json (replacing an earlier one)."""
    path = Path(adapter_dir) / META_FILE
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["no_answer_threshold"] = {
        "value": choice.threshold,
        "chosen_on": chosen_on,
        "f1": round(choice.f1, 4),
        "questions": questions,
    }
    write_json_atomic(path, meta)


def stored_threshold(adapter_dir: str | Path | None) -> float | None:
    """The threshold the adapter carries; None without an adapter, a loraqa.json or a chosen threshold."""
    if adapter_dir is None:
        return None
    chosen = read_threshold(adapter_dir)
    return float(chosen["value"]) if chosen else None
