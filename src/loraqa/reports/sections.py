"""The report's sections, in reading order, built from a ReportSource as plain blocks.

runs table -> loss curves -> validation F1 -> failures with examples -> decodings -> provenance.
Each builder shows what the runs hold and says in a note what they do not; none of them raises on
a missing or partial run. A sweep adds its own sections (reports/sweep.py) before these.
"""

from __future__ import annotations

from pathlib import Path

from loraqa.metrics.failures import FAILURE_CATEGORIES
from loraqa.reports import figures
from loraqa.reports.curves import evaluation_metric
from loraqa.reports.document import Code, Document, Figure, Paragraph, Section, Table
from loraqa.reports.provenance import run_provenance
from loraqa.reports.source import ReportSource
from loraqa.runs.files import CONFIG_FILE, SUMMARY_FILE, TRIAL_FILE
from loraqa.runs.reading import flatten
from loraqa.runs.record import Evaluation, RunRecord
from loraqa.runs.summary import RunSummary

NA = "n/a"
EXAMPLES_PER_CATEGORY = 3
# Keys that name a run rather than configure it: they always differ and say nothing.
IDENTITY_KEYS = {"name", "output_dir"}
# Shown for a single run (nothing to differ from): what a reader asks first.
HEADLINE_KEYS = (
    "model.name",
    "lora.r",
    "lora.lora_alpha",
    "lora.target_modules",
    "training.learning_rate",
    "training.max_steps",
    "training.num_train_epochs",
    "data.train_samples",
    "data.test_samples",
)


def build_document(source: ReportSource, files_dir: Path) -> Document:
    """Every section of the report; figures are written into files_dir as PNGs."""
    kind = "Run" if source.kind == "run" else source.kind.capitalize()
    document = Document(
        title=f"{kind} report: {source.path.name}",
        subtitle=f"{len(source.runs)} run(s) in {source.path}",
    )
    if source.kind == "sweep":  # its own sections first, then the runs; per-run failures only for the best
        from loraqa.reports.sweep import sweep_sections, top_runs

        best = top_runs(source)
        document.sections = [
            *sweep_sections(source, files_dir),
            runs_section(source.runs),
            curves_section(best, files_dir),
            failures_section(best, files_dir),
            provenance_section(best),
        ]
        return document
    document.sections = [
        runs_section(source.runs),
        *([changes_section(source.details)] if source.details.get("comparison") else []),
        curves_section(source.runs, files_dir),
        failures_section(source.runs, files_dir),
        slices_section(source.runs, files_dir),
        confidence_section(source.runs, files_dir),
        decodings_section(source.runs),
        provenance_section(source.runs),
    ]
    return document


# --- runs table -----------------------------------------------------------------------------------


def differing_keys(configs: list[dict]) -> list[str]:
    """Dotted config keys whose values are not the same in every config (a missing key differs)."""
    flats = [flatten(c) for c in configs]
    keys = sorted(set().union(*flats)) if flats else []
    missing = object()
    return [
        key
        for key in keys
        if key.split(".")[0] not in IDENTITY_KEYS
        and key not in IDENTITY_KEYS
        and len({repr(f.get(key, missing)) for f in flats}) > 1
    ]


def runs_section(runs: list[RunRecord]) -> Section:
    section = Section("Runs")
    keys = differing_keys([r.config for r in runs]) if len(runs) > 1 else []
    if len(runs) > 1:
        shown = ", ".join(f"`{k}`" for k in keys) if keys else "none (the configs are identical)"
        section.blocks.append(Paragraph(f"Config keys that differ between the runs: {shown}."))
    else:
        flat = flatten(runs[0].config)
        section.blocks.append(
            Table(
                ["config key", "value"],
                [[k, _value(flat[k])] for k in HEADLINE_KEYS if k in flat],
                f"Configuration (all keys: {CONFIG_FILE})",
            )
        )
    header = [
        "run",
        "status",
        *keys,
        "formulation",
        "trainable params",
        "train time",
        "peak memory",
        "total time",
        "baseline EM / F1 / ROUGE-L",
        "adapter EM / F1 / ROUGE-L",
        "adapter F1 95% CI",
        "adapter - baseline F1 [95% CI]",
        "validation F1",
    ]
    rows = []
    for run in runs:
        flat = flatten(run.config)
        rows.append(
            [
                run.name,
                _status(run),
                *(_value(flat.get(k, NA)) for k in keys),
                str(run.adapter_meta.get("formulation", NA)),
                trainable_params(run.summary),
                _seconds(run.summary and run.summary.train_seconds),
                peak_memory(run.summary),
                _seconds(run.summary and run.summary.total_seconds),
                _scores(run.baseline),
                _scores(run.adapter),
                _interval(run.adapter),
                versus_baseline(run.summary),
                validation_f1(run),
            ]
        )
    section.blocks.append(Table(header, rows, named_rows=True))
    section.blocks.append(
        Paragraph(
            "EM, F1 and ROUGE-L are on the test split (0-100). Validation F1 is measured on the questions "
            "carved from the training data; compare runs on it, not on the test scores. The 95% intervals are "
            "bootstrapped over the test questions; a difference whose interval holds 0 cannot be told from noise "
            "on these questions (docs/evaluation.md). Peak memory is the "
            "training's peak as the run measured it: GPU tensors on CUDA (cuda_allocated), the process's resident "
            "memory on CPU (cpu_rss; cpu_rss_process counts from the process's start), sampled driver memory on "
            "MPS (mps_driver); n/a where the run recorded none.",
            note=True,
        )
    )
    for run in runs:
        for problem in run.problems:
            section.blocks.append(Paragraph(f"{run.name}: {problem}", note=True))
    return section


def changes_section(details: dict) -> Section:
    """A comparison of finished runs: each run's paired difference from the reference, and the
    questions it fixed or broke (exact match), from comparison.json and changes.jsonl."""
    comparison, changes = details["comparison"], details.get("changes") or []
    reference = comparison.get("reference")
    section = Section("Against the reference run")
    section.blocks.append(
        Paragraph(
            f"Each run is paired with {reference} on the {comparison.get('common_test_questions', NA)} test questions "
            "they share. Fixed: the run answers exactly and the reference does not; broken: the reverse "
            "(all of them in changes.jsonl)."
        )
    )
    rows = []
    for row in comparison.get("runs", []):
        counts = comparison.get("changes", {}).get(row.get("run"), {})
        f1 = (row.get("versus_best") or {}).get("f1")
        difference = NA
        if isinstance(f1, dict):
            difference = f"{f1['difference']:+.2f} [{f1['low']:+.2f}, {f1['high']:+.2f}]"
            difference += "" if f1.get("distinguishable") else " (not distinguishable)"
        rows.append([str(row.get("run")), difference, str(counts.get("fixed", 0)), str(counts.get("broken", 0))])
    section.blocks.append(Table(["run", "test F1 - reference [95% CI]", "fixed", "broken"], rows, named_rows=True))
    examples = [
        [
            c.get("run", ""),
            c.get("change", ""),
            str(c.get("question", "")),
            str(c.get("answer", "")),
            str(c.get("reference_answer", "")),
        ]
        for c in changes[:20]
    ]
    if examples:
        section.blocks.append(
            Table(
                ["run", "change", "question", "answer", "reference's answer"],
                examples,
                "The first 20 changed questions",
            )
        )
    return section


def trainable_params(summary: RunSummary | None) -> str:
    """ "166,658 of 22.7M (0.73%)" from the summary's trainable_params / total_params, else n/a."""
    if summary is None or summary.trainable_params is None:
        return NA
    trainable, total, share = summary.trainable_params, summary.total_params, summary.trainable_percent
    text = f"{int(trainable):,}"
    if total is not None and total > 0:
        text += f" of {_millions(total)}"
        share = 100.0 * trainable / total if share is None else share
    if share is not None:
        text += f" ({share:.2f}%)"
    return text


def peak_memory(summary: RunSummary | None) -> str:
    """ "812 MiB (cpu_rss)" from the summary's peak_memory_mib / _kind; n/a for a run without them
    (recorded before loraqa measured it, or resumed after its last step, which trained nothing)."""
    if summary is None or summary.peak_memory_mib is None:
        return NA
    kind = summary.peak_memory_kind
    return f"{summary.peak_memory_mib:,.0f} MiB" + (f" ({kind})" if kind else "")


def validation_f1(run: RunRecord) -> str:
    """The run's recorded validation F1 (its summary's `validation`), else the last one logged."""
    recorded = run.summary.validation if run.summary is not None else None
    if isinstance(recorded, dict) and isinstance(recorded.get("f1"), (int, float)):
        return f"{recorded['f1']:.2f}"
    steps, values = evaluation_metric(run.log, "eval_f1")
    return f"{values[-1]:.2f} (step {steps[-1]:g})" if values else NA


def _status(run: RunRecord) -> str:
    if run.finished:
        return "finished"
    if run.summary is None and run.log:
        return f"unfinished (trained, no {SUMMARY_FILE})"
    return f"unfinished (no {SUMMARY_FILE})" if run.summary is None else "unfinished (no test metrics)"


def _scores(evaluation: Evaluation | None) -> str:
    if evaluation is None:
        return NA
    m = evaluation.metrics
    return " / ".join(
        f"{m[k]:.2f}" if isinstance(m.get(k), (int, float)) else NA for k in ("exact_match", "f1", "rougeL")
    )


def _interval(evaluation: Evaluation | None) -> str:
    bounds = evaluation.metrics.get("f1_ci") if evaluation else None
    if not isinstance(bounds, dict) or not isinstance(bounds.get("low"), (int, float)):
        return NA
    return f"[{bounds['low']:.1f}, {bounds['high']:.1f}]"


def versus_baseline(summary: RunSummary | None) -> str:
    """ "+44.20 [41.10, 47.30], p<0.001" from the summary's adapter_vs_baseline, labelled when it is noise."""
    comparison = summary.adapter_vs_baseline if summary is not None else None
    f1 = comparison.get("f1") if isinstance(comparison, dict) else None
    if not isinstance(f1, dict) or not isinstance(f1.get("difference"), (int, float)):
        return NA
    p = f1.get("p_value", 1.0)
    text = f"{f1['difference']:+.2f} [{f1['low']:+.2f}, {f1['high']:+.2f}], p{'<0.001' if p < 0.001 else f'={p:.3f}'}"
    return text if f1.get("distinguishable") else f"{text} (not distinguishable)"


def _seconds(value) -> str:
    if not isinstance(value, (int, float)):
        return NA
    return f"{value:,.1f} s"  # one unit for every row, so a column compares at a glance


def _millions(count: float) -> str:
    return f"{count / 1e6:.1f}M" if count >= 1e6 else f"{int(count):,}"


def _value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


# --- curves -----------------------------------------------------------------------------------------


def curves_section(runs: list[RunRecord], files_dir: Path) -> Section:
    section = Section("Training curves")
    loss = figures.loss_curves(runs, files_dir / "loss_curves.png")
    if loss:
        section.blocks.append(
            Figure(loss, "Training and validation loss per step, all runs", "Loss per optimizer step.")
        )
    else:
        section.blocks.append(
            Paragraph(f"No training log (train_log.jsonl) with losses in any run: {_no_log_reasons(runs)}.", note=True)
        )
    f1 = figures.validation_f1(runs, files_dir / "validation_f1.png")
    if f1:
        section.blocks.append(Figure(f1, "Validation F1 and exact match per step, all runs"))
    else:
        section.blocks.append(
            Paragraph("Validation F1 was not measured during training (training.eval_strategy=no).", note=True)
        )
    missing = [r for r in runs if not _losses(r)]
    if missing and (loss or f1):
        section.blocks.append(Paragraph(f"No training log in: {_no_log_reasons(missing)}.", note=True))
    return section


def _losses(run: RunRecord) -> list[dict]:
    return [entry for entry in run.log if "loss" in entry]


def _no_log_reasons(runs: list[RunRecord]) -> str:
    """Each run's name and why it has no loss logged, as far as its config tells."""
    return "; ".join(f"{run.name} ({_no_log_reason(run)})" for run in runs)


def _no_log_reason(run: RunRecord) -> str:
    training = run.config.get("training") or {}
    every, max_steps = training.get("logging_steps"), training.get("max_steps")
    ran = max_steps if isinstance(max_steps, int) and max_steps > 0 else None
    if isinstance(every, int) and ran is not None and every > ran:
        return (
            f"training.logging_steps={every} is above the {ran} steps it ran: set training.logging_steps={ran} or less"
        )
    if run.summary is None:
        return "the run has not finished, or stopped before its first logging step"
    if isinstance(every, int) and ran is None:
        return f"no step reached training.logging_steps={every}: an epoch may hold fewer steps"
    return "no train_log.jsonl"


# --- failures -------------------------------------------------------------------------------------


def failures_section(runs: list[RunRecord], files_dir: Path) -> Section:
    section = Section("Failure categories")
    present = {c for r in runs if r.adapter for c in _categories(r.adapter)}
    categories = [c for c in FAILURE_CATEGORIES if c in present] + sorted(present - set(FAILURE_CATEGORIES))
    chart = figures.failure_counts(runs, files_dir / "failure_categories.png", categories)
    if chart:
        section.blocks.append(Figure(chart, "Wrong test answers per failure category, per run"))
    for run in runs:
        section.blocks.extend(_run_failures(run, categories))
    return section


def confidence_section(runs: list[RunRecord], files_dir: Path) -> Section:
    """Whether the adapter's confidences mean what they say: ECE and Brier before and after the
    calibration fitted on validation, a reliability diagram, the coverage curve, suggested thresholds."""
    section = Section("Confidence and abstention")
    rows = []
    for index, run in enumerate(runs[:5]):
        path = figures.no_answer_threshold(run, files_dir / f"no_answer_{index}.png")
        if path:  # SQuAD v2
            section.blocks.append(
                Figure(
                    path,
                    f"Validation F1, HasAns and NoAns F1 against the no-answer threshold "
                    f"for {run.name}, with the threshold chosen there",
                )
            )
        calibration = run.adapter.metrics.get("calibration") if run.adapter else None
        if not isinstance(calibration, dict):
            continue
        test = calibration.get("test") or {}
        thresholds = calibration.get("min_confidence_for_precision") or {}
        rows.append(
            [
                run.name,
                str((calibration.get("calibrator") or {}).get("method", NA)),
                f"{test.get('ece_before', 0):.3f} -> {test.get('ece_after', 0):.3f}",
                f"{test.get('brier_before', 0):.3f} -> {test.get('brier_after', 0):.3f}",
                _value(thresholds.get("0.9")),
                _value(thresholds.get("0.8")),
            ]
        )
        path = figures.confidence(run, files_dir / f"confidence_{index}.png")
        if path:
            section.blocks.append(Figure(path, f"Reliability diagram and coverage curve for {run.name}"))
    if rows:
        section.blocks.insert(
            0,
            Table(
                [
                    "run",
                    "calibration",
                    "test ECE (15 bins)",
                    "test Brier",
                    "min confidence for 90% EM precision",
                    "for 80%",
                ],
                rows,
                "Fitted on the validation split, measured on test",
            ),
        )
        section.blocks.append(
            Paragraph(
                "ECE: the mean gap between confidence and accuracy over 15 bins (0 is "
                "perfect); Brier: mean squared gap. The thresholds are calibrated "
                "confidences on the test split: answering only above them kept exact-match "
                "precision at 90% / 80% there.",
                note=True,
            )
        )
    else:
        section.blocks.append(Paragraph("No run recorded a calibration (it needs a validation split).", note=True))
    return section


def slices_section(runs: list[RunRecord], files_dir: Path) -> Section:
    """Where each adapter fails: F1 per question word, answer type, context length, answer position."""
    section = Section("Where it fails: F1 by slice")
    for index, run in enumerate(runs[:5]):
        path = figures.slice_f1(run, files_dir / f"slices_{index}.png")
        if path:
            section.blocks.append(
                Figure(
                    path,
                    f"Test F1 by slice for {run.name}",
                    "Bars: F1 of the questions in each slice; whiskers: 95% bootstrap "
                    "interval; a slice of few questions has a wide one.",
                )
            )
    changes = [(run, run.summary and run.summary.slices_vs_baseline) for run in runs[:5]]
    rows = [
        [run.name, f"{dimension}: {name}", f"{c['difference']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}]", str(c["n"])]
        for run, by_dimension in changes
        if isinstance(by_dimension, dict)
        for dimension, group in by_dimension.items()
        for name, c in group.items()
    ]
    if rows:
        section.blocks.append(
            Table(
                ["run", "slice", "F1 change from no adapter [95% CI]", "n"],
                rows,
                "What the adapter changed, slice by slice (paired on the same questions)",
            )
        )
    if not section.blocks:
        section.blocks.append(Paragraph("No run recorded slices (evaluated before loraqa measured them).", note=True))
    return section


def _categories(evaluation: Evaluation) -> set[str]:
    recorded = evaluation.metrics.get("failures")
    found = {k for k, v in recorded.items() if v} if isinstance(recorded, dict) else set()
    return found | {row["failure"] for row in evaluation.rows if row.get("failure")}


def _run_failures(run: RunRecord, categories: list[str]) -> list:
    if run.adapter is None:
        return [
            Section(
                run.name, [Paragraph("No test evaluation of the adapter (metrics.json) in this run.", note=True)], 3
            )
        ]
    blocks: list = []
    total = run.adapter.metrics.get("count", len(run.adapter.rows))
    wrong = [row for row in run.adapter.rows if row.get("failure")]
    blocks.append(Paragraph(f"{len(wrong)} of {total} test answers are not an exact match."))
    if not run.adapter.rows:
        blocks.append(Paragraph("No predictions.jsonl: counts only, no examples.", note=True))
    for category in categories:
        rows = [r for r in wrong if r.get("failure") == category]
        if not rows:
            continue
        examples = [
            [
                str(r.get("question", "")),
                " | ".join(dict.fromkeys(map(str, r.get("gold_answers") or []))) or "(unanswerable)",
                str(r.get("prediction", "")) or "(empty)",
                _f1(r),
            ]
            for r in rows[:EXAMPLES_PER_CATEGORY]
        ]
        caption = f"{category.replace('_', ' ')}: {len(rows)} question(s)"
        if len(rows) > EXAMPLES_PER_CATEGORY:
            caption += f", first {EXAMPLES_PER_CATEGORY} shown"
        blocks.append(Table(["question", "gold answers", "prediction", "F1 (%)"], examples, caption))
    return [Section(run.name, blocks, 3)]


def _f1(row: dict) -> str:
    value = row.get("f1")
    return (
        f"{100 * value:.0f}"
        if isinstance(value, (int, float)) and value <= 1
        else (str(value) if value is not None else NA)
    )


# --- decodings ------------------------------------------------------------------------------------


def decodings_section(runs: list[RunRecord]) -> Section:
    section = Section("Decoding strategies")
    rows = []
    for run in runs:
        evaluations = [e for e in ([run.adapter] if run.adapter else []) + run.extra_evaluations]
        decodings = {e.decoding or _config_decoding(run) for e in evaluations}
        if len(decodings) < 2:
            continue
        for evaluation in evaluations:
            m = evaluation.metrics
            rows.append(
                [
                    run.name,
                    evaluation.label,
                    evaluation.decoding or f"{_config_decoding(run)} (config)",
                    "adapter" if m.get("adapter") or evaluation.label == "adapter" else "base model",
                    *(
                        f"{m[k]:.2f}" if isinstance(m.get(k), (int, float)) else NA
                        for k in ("exact_match", "f1", "rougeL")
                    ),
                    _seconds(m.get("seconds")),
                ]
            )
    if rows:
        section.blocks.append(
            Table(["run", "evaluation", "decoding", "model", "EM", "F1", "ROUGE-L", "time"], rows, named_rows=True)
        )
    else:
        section.blocks.append(
            Paragraph(
                "Each run was evaluated with one decoding only (`loraqa eval --decoding "
                "greedy,beam4` compares several).",
                note=True,
            )
        )
    return section


def _config_decoding(run: RunRecord) -> str:
    generation = run.config.get("generation")
    return str(generation.get("decoding", "greedy")) if isinstance(generation, dict) else "greedy"


# --- provenance -----------------------------------------------------------------------------------


def provenance_section(runs: list[RunRecord]) -> Section:
    section = Section("Versions and commands")
    rows, unrecorded = [], False
    for run in runs:
        p = run_provenance(run)
        unrecorded |= len(p.recorded) < len(p.versions) or not p.commit_recorded
        versions = [v + ("" if lib in p.recorded else " *") for lib, v in p.versions.items()]
        commit = (p.commit[:12] if p.commit else NA) + ("" if p.commit_recorded or not p.commit else " *")
        rows.append([run.name, *versions, commit])
    section.blocks.append(
        Table(["run", "loraqa", "torch", "transformers", "peft", "git commit"], rows, named_rows=True)
    )
    if unrecorded:
        section.blocks.append(
            Paragraph(
                "* not recorded by the run: the version installed (or commit checked out) where this report was "
                "written, which may differ from the one that trained it.",
                note=True,
            )
        )
    for run in runs:
        command = run_provenance(run).command
        if command:
            # A sweep trial (it has sweep_trial.json) records the `loraqa train` line that retrains it.
            made = "reproduces" if (run.path / TRIAL_FILE).is_file() else "made"
            section.blocks.append(Paragraph(f"{run.name}: the command that {made} it"))
            section.blocks.append(Code(command))
        else:
            section.blocks.append(
                Paragraph(
                    f"{run.name}: command not recorded; this reruns its configuration into a new directory:", note=True
                )
            )
            section.blocks.append(Code(f"loraqa train {run.path / CONFIG_FILE} output_dir={run.path}-rerun"))
    return section
