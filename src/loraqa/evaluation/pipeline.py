"""`loraqa eval`: the base model alone (zero-shot baseline) or base + adapter, on the test split,
for one or several decodings, written to an output directory and printed as one table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from transformers import set_seed

from loraqa.config.schema import RunConfig
from loraqa.data.prepare import load_test
from loraqa.errors import RunDirError
from loraqa.evaluation.runner import (
    EvalOutcome,
    evaluate_records,
    format_table,
    predict_settings,
    side_by_side_rows,
    write_outcome,
)
from loraqa.runs.atomic import write_text_atomic
from loraqa.inference.ready import load_ready_model, model_config_for_adapter
from loraqa.models.loading import inspect_base
from loraqa.runs.rundir import loraqa_outputs
from loraqa.device import plan_device
from loraqa.console import say


def default_output(config: RunConfig, adapter: str | None) -> Path:
    if adapter:
        return Path(adapter).parent / "eval"
    return Path(config.run_dir) / "eval-base"


def run_evaluation(
    config: RunConfig,
    *,
    adapter: str | None,
    decodings: list[str],
    output: str | None,
    overwrite: bool,
    base_name: str | None = None,
    model_overrides: frozenset[str] = frozenset(),
) -> dict[str, dict]:
    """Evaluate; with `adapter`, the model section is the adapter's, plus the user's trust settings and
    the inference lengths among `model_overrides` (the model.* keys of the command line)."""
    out_dir = Path(output) if output else default_output(config, adapter)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"{out_dir} exists and is not a directory; use another --output DIR")
    existing = loraqa_outputs(out_dir)
    if existing and not overwrite:  # a run, an earlier evaluation, predictions or a report
        raise RunDirError(
            f"{out_dir} already holds an evaluation or run ({', '.join(existing)}); use --overwrite or --output DIR"
        )
    if adapter:
        config = dataclasses.replace(
            config, model=model_config_for_adapter(adapter, config.model, base_name, model_overrides)
        )
    records, version_2 = load_test(config.data)
    set_seed(config.training.seed)
    spec = inspect_base(config.model)
    plan = plan_device(config.training.device, config.training.precision, spec.model_type)
    ready = load_ready_model(config.model, plan, adapter, spec=spec)
    say(
        f"evaluating {config.model.name}{' + ' + adapter if adapter else ''} on {len(records)} questions, {plan.description}"
    )
    formulation = ready.spec.formulation
    if not formulation.generates and (len(decodings) > 1 or decodings != ["greedy"]):
        say(f"{formulation.name} models pick a span, no decoding applies: evaluated once (not {','.join(decodings)})")
        decodings = decodings[:1]
    outcomes: dict[str, EvalOutcome] = {}
    for decoding in decodings:
        settings = predict_settings(config, version_2, decoding)
        outcome = evaluate_records(formulation, ready.model, ready.tokenizer, records, settings, label=decoding)
        target = out_dir if len(decodings) == 1 else out_dir / decoding
        extra = {
            "model": config.model.name,
            "adapter": adapter,
            "decoding": decoding if formulation.generates else None,
        }
        write_outcome(outcome, target, extra=extra)
        outcomes[decoding] = outcome
    if len(outcomes) > 1:  # the answers side by side, one row per question
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in side_by_side_rows(records, outcomes))
        write_text_atomic(out_dir / "decodings.jsonl", lines)
    label = config.model.name + (" + adapter" if adapter else "")
    rows = [(f"{label} [{d}]" if formulation.generates else label, o.metrics) for d, o in outcomes.items()]
    print(format_table(rows))
    print(f"written to {out_dir}" + ("  (decodings.jsonl: the answers side by side)" if len(outcomes) > 1 else ""))
    return {d: o.metrics for d, o in outcomes.items()}
