"""`loraqa eval`: load (the base alone, the zero-shot baseline, or base + adapter) -> evaluate on
the test split for one or several decodings, written to an output directory, printed as one table.

Under torchrun / accelerate launch each rank answers its share of the questions (evaluate_records
shards and gathers, as `loraqa train`'s evaluation does); rank 0 alone writes and prints, so the
files and metrics are a single process's."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers import set_seed

from loraqa import distributed
from loraqa.atomic import write_text_atomic
from loraqa.config.schema import RunConfig
from loraqa.console import say
from loraqa.data.prepare import load_test
from loraqa.data.records import QARecord
from loraqa.errors import RunDirError
from loraqa.inference.evaluate import (
    EvalOutcome,
    evaluate_records,
    format_table,
    predict_settings,
    side_by_side_rows,
    write_outcome,
)
from loraqa.inference.ready import ReadyModel, answer_setup, load_for_answering
from loraqa.inference.uncertainty import describe_comparison, paired_comparison
from loraqa.runs.rundir import loraqa_outputs


@dataclass
class Loaded:
    """A model ready to answer, the test questions and the config it answers them with."""

    config: RunConfig
    ready: ReadyModel
    records: list[QARecord]
    version_2: bool
    device: str


def default_output(config: RunConfig, adapter: str | None) -> Path:
    if adapter:
        return Path(adapter).parent / "eval"
    return Path(config.run_dir) / "eval-base"


def load_for_evaluation(
    config: RunConfig, adapter: str | None, base_name: str | None = None, overrides: Sequence[str] = ()
) -> Loaded:
    """The load phase of `loraqa eval`: with `adapter`, the model section is the adapter's, plus the
    user's trust settings and the inference lengths its `overrides` set (`answer_setup`); the test
    questions are read before any weights load."""
    setup = answer_setup(config, adapter, base_name=base_name, overrides=overrides)
    config = dataclasses.replace(config, model=setup.model_config)
    records, version_2 = load_test(config.data)
    set_seed(config.training.seed)
    distributed.init_process_group(cpu=setup.plan.device == "cpu")  # [ddp] join torchrun's job (no-op alone)
    ready = load_for_answering(config, adapter, setup=setup)
    return Loaded(config, ready, records, version_2, setup.plan.description)


def evaluate_loaded(loaded: Loaded, decoding: str) -> EvalOutcome:
    """The evaluate phase of `loraqa eval`: answer and score the test questions with one decoding."""
    settings = predict_settings(loaded.config, loaded.version_2, decoding, adapter=loaded.ready.adapter)
    formulation = loaded.ready.spec.formulation
    return evaluate_records(
        formulation, loaded.ready.model, loaded.ready.tokenizer, loaded.records, settings, label=decoding
    )


def run_evaluation(
    config: RunConfig,
    *,
    adapter: str | None,
    decodings: list[str],
    output: str | None,
    overwrite: bool,
    base_name: str | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, dict]:
    """Evaluate (see `load_for_evaluation`); return each decoding's metrics."""
    out_dir = Path(output) if output else default_output(config, adapter)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"{out_dir} exists and is not a directory; use another --output DIR")
    # Every rank checks (reads only): rank 0 cannot write before the others reach the first gather.
    existing = loraqa_outputs(out_dir)
    if existing and not overwrite:  # a run, an earlier evaluation, predictions or a report
        raise RunDirError(
            f"{out_dir} already holds an evaluation or run ({', '.join(existing)}); use --overwrite or --output DIR"
        )
    loaded = load_for_evaluation(config, adapter, base_name, overrides)
    config, records = loaded.config, loaded.records
    say(
        f"evaluating {config.model.name}{' + ' + adapter if adapter else ''} on {len(records)} questions, {loaded.device}"
    )
    formulation = loaded.ready.spec.formulation
    if not formulation.generates and (len(decodings) > 1 or decodings != ["greedy"]):
        say(f"{formulation.name} models pick a span, no decoding applies: evaluated once (not {','.join(decodings)})")
        decodings = decodings[:1]
    outcomes: dict[str, EvalOutcome] = {}
    for decoding in decodings:
        outcome = evaluate_loaded(loaded, decoding)
        target = out_dir if len(decodings) == 1 else out_dir / decoding
        extra: dict[str, object] = {
            "model": config.model.name,
            "adapter": adapter,
            "decoding": decoding if formulation.generates else None,
        }
        if outcomes:  # later decodings, paired with the first on the same questions
            first = next(iter(outcomes))
            extra[f"versus_{first}"] = paired_comparison(outcome.rows, outcomes[first].rows)
        if distributed.is_main():  # [ddp]
            write_outcome(outcome, target, extra=extra)
        outcomes[decoding] = outcome
    metrics = {d: o.metrics for d, o in outcomes.items()}
    if not distributed.is_main():  # [ddp] rank 0 writes and prints the results
        return metrics
    if len(outcomes) > 1:  # the answers side by side, one row per question
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in side_by_side_rows(records, outcomes))
        write_text_atomic(out_dir / "decodings.jsonl", lines)
    label = config.model.name + (" + adapter" if adapter else "")
    rows = [(f"{label} [{d}]" if formulation.generates else label, o.metrics) for d, o in outcomes.items()]
    print(format_table(rows))
    first = next(iter(outcomes))
    for decoding, outcome in list(outcomes.items())[1:]:
        print(describe_comparison(decoding, first, paired_comparison(outcome.rows, outcomes[first].rows)))
    print(f"written to {out_dir}" + ("  (decodings.jsonl: the answers side by side)" if len(outcomes) > 1 else ""))
    return metrics
