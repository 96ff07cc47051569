"""Every int8 recipe ONNX Runtime offers for an extractive export, measured on one CPU: is any worth it?

    python bench/int8_recipes.py --adapter runs/minilm-l6-squad/adapter --questions 200 --rounds 2

`loraqa export --int8` ships the recipes of `loraqa.export.int8.RECIPES` and keeps one only when it
passes both bars (<= 1.0 F1 lost, >= 1.7x torch fp32's answers per CPU second). This bench measures a
wider set than it ships, so the choice is made on figures: dynamic quantization per tensor and per
channel, with and without `reduce_range` (7-bit weights: AVX2's u8 x s8 multiply-add saturates in
16 bits without VNNI), after ORT's pre-processing, with the QA head in float, and static quantization
(QOperator and QDQ, min-max calibration on 64 training questions' windows). Each variant answers
the run's first N test questions with loraqa's windowing and answer search; the variants alternate
within each round and are timed in CPU seconds (process time), so a busy machine weighs on all alike.
Writes bench/results/int8-recipes-<date>.json (bench/record.py: commit, command, machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from record import stamped  # bench/record.py, next to this script

from loraqa.config.loader import load_config
from loraqa.data.prepare import load_run_data
from loraqa.export.command import load_merged, write_onnx
from loraqa.export.int8 import run_test_questions
from loraqa.inference.ready import load_onnx_export
from loraqa.metrics.squad import squad_scores
from loraqa.runs import files

DYNAMIC = {  # name: (pre-processed graph, per channel, reduce_range, MatMuls kept in float)
    "dynamic-per-tensor": (False, False, False, None),
    "dynamic-per-tensor-reduce-range": (False, False, True, None),
    "dynamic-per-tensor-reduce-range-float-head": (False, False, True, r"qa_outputs"),
    "dynamic-per-channel": (False, True, False, None),
    "dynamic-per-channel-reduce-range": (False, True, True, None),
    "preprocessed-dynamic-per-tensor-reduce-range": (True, False, True, None),
    "preprocessed-dynamic-per-channel-reduce-range": (True, True, True, None),
}
STATIC = ("static-qoperator-per-channel", "static-qdq-per-channel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    records, settings = run_test_questions(args.adapter)
    records = records[: args.questions]
    calibration = _training_questions(args.adapter, 64)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch_ready = load_merged(args.adapter, load_config(None, ["training.device=cpu"]))
        write_onnx(torch_ready, root / "onnx")
        variants = {"torch fp32": torch_ready, "onnx fp32": load_onnx_export(root / "onnx")}
        for name in [*DYNAMIC, *STATIC]:
            target = root / name
            shutil.copytree(root / "onnx", target)
            if name in DYNAMIC:
                _dynamic(root, target / "model.onnx", *DYNAMIC[name])
            else:
                _static(root / "onnx", target / "model.onnx", name, calibration, settings)
            variants[name] = load_onnx_export(target)
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        answers: dict[str, dict[str, str]] = {}
        for _ in range(args.rounds):
            for name, ready in variants.items():
                started = time.process_time()
                found = ready.spec.formulation.predict(ready.model, ready.tokenizer, records, settings).predictions
                seconds[name].append(time.process_time() - started)
                answers[name] = {p.id: p.text for p in found}
    gold = {r.id: r.answer_texts for r in records}
    torch_speed = len(records) / statistics.median(seconds["torch fp32"])
    rows = {}
    for name in variants:
        speed = len(records) / statistics.median(seconds[name])
        rows[name] = {
            "f1": round(squad_scores(answers[name], gold)["f1"], 2),
            "answers_per_cpu_second": round(speed, 2),
            "x_torch": round(speed / torch_speed, 2),
            "answers_changed_vs_onnx_fp32": sum(answers[name][k] != v for k, v in answers["onnx fp32"].items()),
            "cpu_seconds": [round(s, 2) for s in seconds[name]],
        }
        print(f"{name:48} {rows[name]['x_torch']:5.2f}x torch  F1 {rows[name]['f1']:6.2f}", flush=True)
    result = {"adapter": args.adapter, "questions": len(records), "rounds": args.rounds, "variants": rows}
    out = Path(__file__).resolve().parent / "results" / f"int8-recipes-{datetime.date.today()}.json"
    out.write_text(json.dumps(stamped(result, sys.argv), indent=2) + "\n", encoding="utf-8")
    print(f"written to {out}")


def _training_questions(adapter: str, count: int):
    """`count` questions of the run's own training data: the calibration set static recipes need."""
    config = load_config(str(Path(adapter).parent / files.CONFIG_FILE), ["training.device=cpu"])
    return load_run_data(config.data, validation=False).train[:count]


def _dynamic(root: Path, target: Path, preprocessed: bool, per_channel: bool, reduce_range: bool, keep: str | None):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = root / "onnx" / "model.onnx"
    if preprocessed:
        if not (root / "preprocessed.onnx").is_file():
            quant_pre_process(str(source), str(root / "preprocessed.onnx"), skip_symbolic_shape=True)
        source = root / "preprocessed.onnx"
    nodes = [n.name for n in onnx.load(str(source), load_external_data=False).graph.node if n.op_type == "MatMul"]
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        reduce_range=reduce_range,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=[n for n in nodes if keep and re.search(keep, n)],
    )


def _static(float_dir: Path, target: Path, name: str, calibration, settings) -> None:
    """Static int8, calibrated on the windows loraqa feeds the float graph for `calibration`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    import loraqa.inference.onnx_model as onnx_model

    windows: list[dict] = []
    run_session = onnx_model.run_session

    def recording(session, **inputs):
        wanted = {i.name for i in session.get_inputs()}
        batch = {k: v.detach().cpu().numpy() for k, v in inputs.items() if k in wanted}
        windows.extend({k: v[i : i + 1] for k, v in batch.items()} for i in range(len(batch["input_ids"])))
        return run_session(session, **inputs)

    onnx_model.run_session = recording  # one window at a time: the calibrator needs equal shapes per feed
    try:
        ready = load_onnx_export(float_dir)
        ready.spec.formulation.predict(ready.model, ready.tokenizer, calibration, settings)
    finally:
        onnx_model.run_session = run_session

    class Windows(CalibrationDataReader):
        def __init__(self):
            self.left = iter(windows)

        def get_next(self):
            return next(self.left, None)

    quantize_static(
        str(float_dir / "model.onnx"),
        str(target),
        Windows(),
        quant_format=QuantFormat.QOperator if "qoperator" in name else QuantFormat.QDQ,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


if __name__ == "__main__":
    main()
