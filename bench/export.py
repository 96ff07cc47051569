"""Answers per CPU second and F1 of one extractive adapter as torch fp32, ONNX fp32 and ONNX int8.

    python bench/export.py --adapter runs/minilm-l6-squad/adapter --questions 500 --rounds 3

The same questions (the run's own test set, first N), loraqa's windowing and answer search for all
three; the variants alternate within each round so a busy machine slows them alike; CPU seconds
(process time, all threads) rather than wall time, for the same reason. The int8 variant is the one
`loraqa export --int8` chooses (`loraqa.export.int8.RECIPES`, forced so the figures exist even when
it misses the 1-F1 bar). Writes bench/results/export.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from record import stamped  # bench/record.py, next to this script

from loraqa.config.loader import load_config
from loraqa.export.command import load_merged, write_onnx
from loraqa.export.int8 import FIGURES_FILE, INT8_DIR, run_test_questions, write_int8
from loraqa.inference.ready import load_onnx_export
from loraqa.metrics.squad import squad_scores


def _timed(ready, records, settings) -> tuple[float, dict[str, str]]:
    started = time.process_time()
    result = ready.spec.formulation.predict(ready.model, ready.tokenizer, records, settings)
    return time.process_time() - started, {p.id: p.text for p in result.predictions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default="bench/results/export.json")
    args = parser.parse_args()

    records, settings = run_test_questions(args.adapter)
    records = records[: args.questions]
    gold = {r.id: r.answer_texts for r in records}
    with tempfile.TemporaryDirectory() as tmp:
        torch_ready = load_merged(args.adapter, load_config(None, ["training.device=cpu"]))
        write_onnx(load_merged(args.adapter, load_config(None, ["training.device=cpu"])), Path(tmp) / "onnx")
        chosen = write_int8(Path(tmp) / "onnx", records, settings, force=True, torch_ready=torch_ready)
        variants = {
            "torch fp32": torch_ready,
            "onnx fp32": load_onnx_export(Path(tmp) / "onnx"),
            f"onnx int8 ({chosen['recipe']})": load_onnx_export(Path(tmp) / "onnx" / INT8_DIR),
        }
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        answers: dict[str, dict[str, str]] = {}
        for _ in range(args.rounds):
            for name, ready in variants.items():  # alternating: each round runs every variant once
                cpu, answers[name] = _timed(ready, records, settings)
                seconds[name].append(cpu)
        figures = json.loads((Path(tmp) / "onnx" / FIGURES_FILE).read_text())
    reference = answers["torch fp32"]
    rows = {}
    for name in variants:
        scores = squad_scores(answers[name], gold)
        rows[name] = {
            "answers_per_cpu_second": round(len(records) / statistics.median(seconds[name]), 2),
            "cpu_seconds": [round(s, 2) for s in seconds[name]],
            "f1": round(scores["f1"], 2),
            "exact_match": round(scores["exact_match"], 2),
            "answers_changed_vs_torch": sum(answers[name][k] != v for k, v in reference.items()),
        }
    base = rows["torch fp32"]["answers_per_cpu_second"]
    print(f"{len(records)} questions, {args.rounds} alternating rounds (median CPU seconds)")
    print(f"{'variant':50} {'ans/CPU s':>10} {'x torch':>8} {'F1':>7} {'changed':>8}")
    for name, row in rows.items():
        print(
            f"{name:50} {row['answers_per_cpu_second']:10.2f} {row['answers_per_cpu_second'] / base:8.2f} "
            f"{row['f1']:7.2f} {row['answers_changed_vs_torch']:8d}"
        )
    result = {
        "adapter": args.adapter,
        "questions": len(records),
        "rounds": args.rounds,
        "variants": rows,
        "int8_recipes_tried": figures["tried"],
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(stamped(result, sys.argv), indent=2) + "\n", encoding="utf-8")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
