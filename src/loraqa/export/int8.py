"""`loraqa export --format onnx --int8`: an int8 variant kept only when it keeps the answers and pays.

Measured before this was written (docs/deploy.md): quantizing every MatMul of a MiniLM QA model
dynamically lost 3.6 F1 (ONNX Runtime, per-tensor) to 5.8 F1 (torch). So the variant is chosen by
measurement on the run's own test questions: RECIPES are tried from the fastest to the most careful
(per-channel weights; then the QA head kept in float; then also the feed-forward output projections,
whose inputs after GELU carry the outliers per-tensor int8 rounds worst), and the first whose F1 is
within MAX_F1_LOSS of the float export's is the candidate. It is written to OUTPUT/int8, with the
figures beside it, only if it also answers at least MIN_SPEEDUP times as many questions per CPU second
as the torch model `loraqa predict` runs, measured on the same questions on this machine: on CPUs
without int8 dot-product instructions (AVX2 only) no recipe was more than 1.04x as fast as the float export
(docs/deploy.md), and a smaller file that is no faster and answers differently is not worth shipping
by default. Otherwise the export refuses, or with `--force` writes the closest one and says what it
loses. Extractive (span) graphs only: generative graphs re-run per token, and their answers are a
chain of argmaxes that int8 moves more easily; they stay fp32.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from loraqa.errors import LoraqaError
from loraqa.runs import files

MAX_F1_LOSS = 1.0  # points of F1 on the run's test questions; the bar
MIN_SPEEDUP = 1.7  # answers per CPU second over torch fp32 on the same questions; the bar
INT8_DIR = "int8"
FIGURES_FILE = "int8_figures.json"


@dataclass(frozen=True)
class Recipe:
    name: str
    per_channel: bool
    keep_float: str | None  # MatMul nodes whose names match this regex stay float


RECIPES = (
    Recipe("dynamic-per-channel", True, None),
    Recipe("dynamic-per-channel-float-head", True, r"qa_outputs"),
    # BERT's layer.N/output/dense and DistilBERT's ffn/lin2: the feed-forward down-projections
    Recipe("dynamic-per-channel-float-head-ffn-out", True, r"qa_outputs|layer\.\d+/output/dense|ffn/lin2"),
)


def quantize_graph(source: Path, target: Path, recipe: Recipe) -> None:
    """Dynamic int8 (weights int8 per channel, activations quantized per batch) of `source`'s MatMuls."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = [n.name for n in onnx.load(str(source), load_external_data=False).graph.node if n.op_type == "MatMul"]
    excluded = [name for name in nodes if recipe.keep_float and re.search(recipe.keep_float, name)]
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=recipe.per_channel,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=excluded,
    )


def score(directory: Path, records, settings) -> dict:
    """F1/EM and answers per CPU second of the ONNX export in `directory` on `records` (loraqa's own path)."""
    from loraqa.inference.ready import load_onnx_export

    return score_ready(load_onnx_export(directory), records, settings)


def score_ready(ready, records, settings) -> dict:
    """F1/EM and answers per CPU second (process time: all threads, and a busy machine slows it less
    than wall time) of a loaded model on `records`."""
    from loraqa.metrics.squad import squad_scores

    started = time.process_time()
    result = ready.spec.formulation.predict(ready.model, ready.tokenizer, records, settings)
    cpu = time.process_time() - started
    answers = {p.id: p.text for p in result.predictions}
    scores = squad_scores(answers, {r.id: r.answer_texts for r in records})
    return {
        "f1": scores["f1"],
        "exact_match": scores["exact_match"],
        "answers_per_cpu_second": len(records) / cpu,
        "answers": answers,
    }


def write_int8(float_dir: Path, records, settings, force: bool, torch_ready) -> dict:
    """Add `float_dir/int8`, an export like `float_dir` with an int8 graph, chosen as the module says.

    `torch_ready`: the merged torch model the export was made from, the speed the int8 graph must beat."""
    reference = score_ready(torch_ready, records, settings)
    floating = score(float_dir, records, settings)
    tried = []
    for recipe in RECIPES:
        candidate = float_dir.parent / f".{float_dir.name}.int8-{recipe.name}"
        shutil.rmtree(candidate, ignore_errors=True)
        shutil.copytree(float_dir, candidate)
        quantize_graph(float_dir / "model.onnx", candidate / "model.onnx", recipe)
        figures = score(candidate, records, settings)
        changed = sum(figures["answers"][k] != v for k, v in floating["answers"].items())
        tried.append((recipe, candidate, figures, changed))
        if floating["f1"] - figures["f1"] <= MAX_F1_LOSS:
            break
    recipe, chosen, figures, changed = min(tried, key=lambda t: floating["f1"] - t[2]["f1"])
    loss = floating["f1"] - figures["f1"]
    speedup = figures["answers_per_cpu_second"] / reference["answers_per_cpu_second"]
    summary = {
        "recipe": recipe.name,
        "questions": len(records),
        "max_f1_loss": MAX_F1_LOSS,
        "min_speedup_over_torch": MIN_SPEEDUP,
        "torch_fp32": _figures(reference),
        "float": _figures(floating),
        "int8": _figures(figures),
        "f1_loss": round(loss, 2),
        "answers_changed": changed,
        "speedup_per_cpu_second": round(figures["answers_per_cpu_second"] / floating["answers_per_cpu_second"], 2),
        "speedup_over_torch": round(speedup, 2),
        "tried": [{"recipe": r.name, "f1": round(f["f1"], 2)} for r, _, f, _ in tried],
    }
    for _, path, _, _ in tried:
        if path != chosen:
            shutil.rmtree(path, ignore_errors=True)
    problem = _shortfall(recipe, loss, speedup, len(records))
    if problem and not force:
        shutil.rmtree(chosen, ignore_errors=True)
        raise LoraqaError(f"--int8: {problem}; the float export is written; --force writes the int8 variant anyway")
    if problem:
        print(f"loraqa: WARNING: int8 written only because of --force: {problem}", file=sys.stderr)
    (chosen / FIGURES_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (float_dir / FIGURES_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    chosen.rename(float_dir / INT8_DIR)
    return summary


def _shortfall(recipe: Recipe, loss: float, speedup: float, questions: int) -> str | None:
    """Why the chosen recipe misses a bar (losing F1 first: that one changes answers), or None."""
    if loss > MAX_F1_LOSS:
        return (
            f"the best recipe ({recipe.name}) loses {loss:.2f} F1 on {questions} test questions "
            f"(more than {MAX_F1_LOSS})"
        )
    if speedup < MIN_SPEEDUP:
        return (
            f"the best recipe ({recipe.name}) answers only {speedup:.2f}x as many questions per CPU second as "
            f"torch fp32 on this machine (the bar is {MIN_SPEEDUP}x; CPUs without int8 dot-product instructions "
            "rarely gain)"
        )
    return None


def _figures(scores: dict) -> dict:
    return {k: round(v, 2) for k, v in scores.items() if k != "answers"}


def run_test_questions(adapter: str):
    """The test questions of the run `adapter` was saved in (RUN/config.yaml) and its answer settings."""
    from loraqa.config.loader import load_config
    from loraqa.data.prepare import load_test
    from loraqa.inference.evaluate import predict_settings

    run_config = Path(adapter).parent / files.CONFIG_FILE
    if not run_config.is_file():
        raise LoraqaError(f"--int8 measures on the run's test questions, and {run_config} is missing")
    config = load_config(str(run_config), ["training.device=cpu"])
    records, version_2 = load_test(config.data)
    settings = predict_settings(config, version_2)
    settings.with_loss = False
    return records, settings
