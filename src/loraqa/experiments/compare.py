"""`loraqa compare`: several configurations trained and evaluated on identical questions, side by side.

Each configuration becomes an ordinary run directory `runs/NAME/<run-name>/` made by the pipeline
phases (`run_training`); the shared overrides apply to every configuration. Identity is checked, not
forced: after the overrides, every config's `data` and `generation` sections must be equal, or the
comparison is refused with one line naming the config and key (forcing them equal would silently
run something other than what a config file says). Every run carves the same validation split,
and the best run is chosen on validation F1, never on the test set.

Re-running the same command re-uses runs that finished (summary.json present), resumes one that
started (its directory holds a run) and trains the rest.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from loraqa.atomic import write_json_atomic, write_text_atomic
from loraqa.config.loader import config_to_dict, load_config
from loraqa.config.schema import RunConfig
from loraqa.console import say
from loraqa.errors import ConfigError
from loraqa.inference.uncertainty import describe_comparison, paired_comparison, read_question_rows
from loraqa.pipeline import run_training
from loraqa.runs import files
from loraqa.runs.reading import flatten, read_json
from loraqa.runs.rundir import RunDirectory
from loraqa.runs.summary import RunSummary, read_summary

IDENTICAL_SECTIONS = ("data", "generation")  # what makes the questions and the answering the same
CHOSEN_ON = "validation f1"
_NOT_DIFFERENCES = {"name", "output_dir"}  # differ by construction


@dataclass
class ComparedRun:
    name: str
    config: str  # the config file (or shipped name) it came from
    run_dir: Path
    summary: RunSummary
    status: str  # "trained", "resumed" or "reused" (finished before this command)


@dataclass
class ComparisonResult:
    name: str
    directory: Path
    runs: list[ComparedRun]
    best: str | None  # the run name with the highest validation F1
    table: str
    identical_questions: bool
    rows: list[dict] = field(default_factory=list)


def compare(
    configs: list[str], overrides: list[str], name: str, *, root: str | Path = "runs", command: list[str] | None = None
) -> ComparisonResult:
    """Train every config in `configs` (+ `overrides`) into `root/name/<run-name>/`, on identical
    questions; write `root/name/comparison.json`; return the result (table, best on validation)."""
    if len(configs) < 2:
        raise ConfigError("compare", f"needs at least two configs to compare, got {len(configs)}")
    directory = Path(root) / name
    loaded = [load_config(path, overrides) for path in configs]
    _check_identical(configs, loaded)
    names = run_names(configs, loaded)
    runs = []
    for path, config, run_name in zip(configs, loaded, names, strict=True):
        config = load_config(path, [*overrides, f"name={run_name}", f"output_dir={directory / run_name}"])
        runs.append(_run_one(path, config, run_name, command))
    identical = len({json.dumps(r.summary.questions, sort_keys=True) for r in runs}) == 1
    rows = [_row(r) for r in runs]
    scored = [r for r in rows if r["validation_f1"] is not None]
    best = max(scored, key=lambda r: r["validation_f1"])["run"] if scored else None
    _pair_with_best(runs, rows, best, _question_rows(runs))
    table = format_comparison(rows, best)
    write_json_atomic(
        directory / files.COMPARISON_FILE,
        {
            "name": name,
            "configs": list(configs),
            "overrides": list(overrides),
            "chosen_on": CHOSEN_ON,
            "best": best,
            "identical_questions": identical,
            "runs": rows,
            "command": command,
        },
    )
    return ComparisonResult(name, directory, runs, best, table, identical, rows)


def is_finished_run(item: str) -> bool:
    """True for a directory holding a finished run (its summary.json): compared as it is, not trained."""
    return files.is_finished_run(item)


def compare_existing(
    run_dirs: list[str],
    name: str,
    *,
    root: str | Path = "runs",
    command: list[str] | None = None,
    data: str | None = None,
) -> ComparisonResult:
    """Score finished runs against each other on their common test questions, training nothing.

    Writes `root/name/comparison.json` (the same rows and paired differences as a trained
    comparison, `"source": "existing"`) and `root/name/changes.jsonl`: for each run, the questions
    it got right (exact match) that the reference got wrong ("fixed") and the reverse ("broken").
    The reference is the best run on validation F1 when every run recorded one, else the first.
    With `data` (a data file), each run's adapter answers that file's questions instead (written under
    `root/name/RUN/`), and those rows are compared.
    """
    if len(run_dirs) < 2:
        raise ConfigError("compare", f"needs at least two runs to compare, got {len(run_dirs)}")
    directory = Path(root) / name
    names = _unique_names([Path(d).resolve().name for d in run_dirs])
    runs = [
        ComparedRun(n, str(d), Path(d), _read_summary(Path(d)), "existing")
        for d, n in zip(run_dirs, names, strict=True)
    ]
    if data:
        runs = [_evaluated_on(run, data, directory / run.name) for run in runs]
    questions = _question_rows(runs, directory if data else None)  # each run's predictions.jsonl, read once
    for run in runs:
        if questions[run.name] is None:
            raise ConfigError("compare", f"{run.run_dir}: holds no per-question test rows ({files.QUESTION_ROWS_FILE})")
    rows = [_row(r) for r in runs]
    scored = [r for r in rows if r["validation_f1"] is not None]
    best = max(scored, key=lambda r: r["validation_f1"])["run"] if len(scored) == len(rows) else None
    reference = best or rows[0]["run"]
    _pair_with_best(runs, rows, reference, questions)
    changes = _changes(questions, reference)
    common = len(set.intersection(*({row["id"] for row in rows_of} for rows_of in questions.values())))
    table = format_comparison(rows, best)
    if best is None:
        table += f"\n  (not every run recorded validation F1: each is paired with the first, {reference})"
    write_json_atomic(
        directory / files.COMPARISON_FILE,
        {
            "name": name,
            "source": "existing",
            "runs_compared": [str(d) for d in run_dirs],
            "chosen_on": CHOSEN_ON,
            "best": best,
            "reference": reference,
            "common_test_questions": common,
            "identical_questions": all(
                r["versus_best"] is None or r["versus_best"]["questions"] == common for r in rows
            ),
            "runs": rows,
            "changes": {
                run: dict(Counter(c["change"] for c in changes if c["run"] == run)) for run in names if run != reference
            },
            "command": command,
        },
    )
    write_text_atomic(
        directory / files.CHANGES_FILE, "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in changes)
    )
    return ComparisonResult(name, directory, runs, best, table, True, rows)


def _changes(questions: dict[str, list[dict] | None], reference: str) -> list[dict]:
    """Questions each run fixed or broke relative to the reference, by exact match, in the reference's order."""
    reference_rows = questions[reference] or []
    changes = []
    for name, rows_of in questions.items():
        if name == reference:
            continue
        mine = {row["id"]: row for row in rows_of or []}
        for theirs in reference_rows:
            row = mine.get(theirs["id"])
            if row is None or row["exact_match"] == theirs["exact_match"]:
                continue
            changes.append(
                {
                    "run": name,
                    "reference": reference,
                    "id": theirs["id"],
                    "question": theirs.get("question"),
                    "gold_answers": theirs.get("gold_answers"),
                    "change": "fixed" if row["exact_match"] else "broken",
                    "answer": row.get("prediction"),
                    "reference_answer": theirs.get("prediction"),
                }
            )
    return changes


def _read_summary(run_dir: Path) -> RunSummary:
    problems: list[str] = []
    summary = read_summary(run_dir, problems)
    if summary is None:
        why = problems[0] if problems else f"{files.SUMMARY_FILE} is missing"
        raise ConfigError("compare", f"{run_dir}: {why}")
    return summary


def _unique_names(names: list[str]) -> list[str]:
    return [f"{n}-{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _check_identical(paths: list[str], configs: list[RunConfig]) -> None:
    first = config_to_dict(configs[0])
    for path, config in zip(paths[1:], configs[1:], strict=True):
        other = config_to_dict(config)
        for section in IDENTICAL_SECTIONS:
            for key in sorted(set(first[section]) | set(other[section])):
                if first[section].get(key) != other[section].get(key):
                    raise ConfigError(
                        f"{section}.{key}",
                        f"{path} sets {other[section].get(key)!r} but {paths[0]} sets {first[section].get(key)!r}; a "
                        f"comparison needs identical {' and '.join(IDENTICAL_SECTIONS)} sections (set it once on the "
                        "command line for all)",
                    )
    for path, config in zip(paths, configs, strict=True):
        if config.data.validation_samples < 1:
            raise ConfigError(
                "data.validation_samples", f"{path}: a comparison chooses on validation: it must be at least 1"
            )


def run_names(paths: list[str], configs: list[RunConfig]) -> list[str]:
    """Readable unique names: the config file's stem, plus the keys where the configs differ
    (`minilm-l6-squad-lora.r=4`) when stems alone repeat; a counter as the last resort."""
    stems = [_slug(Path(p).name.removesuffix(".yaml").removesuffix(".yml")) for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    flat = [flatten(config_to_dict(c)) for c in configs]
    differing = sorted(
        k for k in set().union(*flat) if k not in _NOT_DIFFERENCES and len({repr(f.get(k)) for f in flat}) > 1
    )
    names = []
    for stem, values in zip(stems, flat, strict=True):
        extra = "-".join(f"{k.split('.')[-1]}{_slug(str(values.get(k)))}" for k in differing)
        names.append(_slug(f"{stem}-{extra}" if extra else stem))
    seen: dict[str, int] = {}
    for i, candidate in enumerate(names):
        seen[candidate] = seen.get(candidate, 0) + 1
        if names.count(candidate) > 1:
            names[i] = f"{candidate}-{seen[candidate]}"
    return names


def _run_one(path: str, config: RunConfig, run_name: str, command) -> ComparedRun:
    run_dir = Path(config.run_dir)
    if files.is_finished_run(run_dir):
        say(f"compare: {run_name} finished before; re-using {run_dir}")
        return ComparedRun(run_name, path, run_dir, _read_summary(run_dir), "reused")
    resume = RunDirectory(run_dir).holds_run()
    say(f"compare: {'resuming' if resume else 'training'} {run_name} ({path})")
    summary = run_training(config, resume=resume, validation=True, command=command)
    return ComparedRun(run_name, path, run_dir, RunSummary.from_dict(summary), "resumed" if resume else "trained")


def _row(run: ComparedRun) -> dict:
    s = run.summary
    test, validation, base = s.adapter, s.validation or {}, s.baseline or {}
    formulation = s.formulation or _adapter_formulation(run.run_dir)
    return {
        "run": run.name,
        "config": run.config,
        "run_dir": str(run.run_dir),
        "status": run.status,
        "model": s.model or None,
        "formulation": formulation,
        "trainable_params": s.trainable_params,
        "total_params": s.total_params,
        "trainable_percent": s.trainable_percent,
        "train_seconds": s.train_seconds,
        "peak_memory_mib": s.peak_memory_mib,
        "peak_memory_kind": s.peak_memory_kind,
        "baseline_f1": base.get("f1"),
        "validation_f1": validation.get("f1"),
        "test_exact_match": test.get("exact_match"),
        "test_f1": test.get("f1"),
        "test_rougeL": test.get("rougeL"),
    }


def _question_rows(runs: list[ComparedRun], evaluated: Path | None = None) -> dict[str, list[dict] | None]:
    """Each run's per-question test rows (its predictions.jsonl, or `evaluated/RUN`'s), by run name."""
    return {run.name: read_question_rows(evaluated / run.name if evaluated else run.run_dir) for run in runs}


def _evaluated_on(run: ComparedRun, data: str, out: Path) -> ComparedRun:
    """The run's adapter on `data`'s questions, answered as `loraqa eval --adapter` answers (the run's own
    config, its decoding), written to `out`; the run with those scores as its test scores."""
    from loraqa.inference.eval_command import evaluate_loaded, load_for_evaluation
    from loraqa.inference.evaluate import write_outcome

    config = load_config(str(run.run_dir / files.CONFIG_FILE), [f"data.test={data}", "data.test_samples=null"])
    say(f"evaluating {run.name}'s adapter on {data}")
    loaded = load_for_evaluation(config, str(RunDirectory(run.run_dir).adapter))
    outcome = evaluate_loaded(loaded, config.generation.decoding)
    adapter = RunDirectory(run.run_dir).adapter
    write_outcome(outcome, out, extra={"model": config.model.name, "adapter": str(adapter), "data": data})
    return dataclasses.replace(run, summary=dataclasses.replace(run.summary, adapter=outcome.metrics))


def _pair_with_best(
    runs: list[ComparedRun], rows: list[dict], best: str | None, questions: dict[str, list[dict] | None]
) -> None:
    """Each run's test F1/EM minus the best-on-validation run's, paired on their common test questions."""
    best_rows = questions.get(best) if best else None
    for run, row in zip(runs, rows, strict=True):
        mine = questions[run.name]
        row["versus_best"] = (
            None if run.name == best or not mine or not best_rows else paired_comparison(mine, best_rows)
        )


def _adapter_formulation(run_dir: Path) -> str | None:
    meta = read_json(files.adapter_meta_path(run_dir))
    return meta.get("formulation") if isinstance(meta, dict) else None


def format_comparison(rows: list[dict], best: str | None) -> str:
    """One line per run; the best on validation F1 is starred, and the footer says so."""
    header = [
        "",
        "run",
        "model",
        "formulation",
        "trainable",
        "train",
        "peak memory",
        "base F1",
        "val F1",
        "test EM",
        "test F1",
        "ROUGE-L",
        "test F1 vs best [95% CI]",
    ]
    lines = []
    for r in rows:
        share = f"{r['trainable_params']:,} ({r['trainable_percent']:.2f}%)" if r["trainable_params"] else "n/a"
        lines.append(
            [
                "*" if r["run"] == best else "",
                r["run"],
                str(r["model"]),
                str(r["formulation"] or "n/a"),
                share,
                _num(r["train_seconds"], "s", 0),
                peak_memory(r),
                _num(r["baseline_f1"]),
                _num(r["validation_f1"]),
                _num(r["test_exact_match"]),
                _num(r["test_f1"]),
                _num(r["test_rougeL"]),
                _versus(r.get("versus_best")),
            ]
        )
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines, strict=True)]

    def render(cells) -> str:
        return "  ".join(
            str(c).ljust(w) if i < 5 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [render(header), "-" * len(render(header)), *(render(line) for line in lines)]
    out.append(f"* best on validation F1 ({best})" if best else "no run recorded validation F1: no best chosen")
    out.append("  (chosen on the validation split carved from train; the test columns are never used to choose)")
    for r in rows:
        if r.get("versus_best"):
            out.append("  " + describe_comparison(r["run"], best or "best", r["versus_best"]))
    kinds = sorted({r["peak_memory_kind"] for r in rows if r.get("peak_memory_kind")})
    if kinds:
        out.append(f"  (peak memory: training's peak, {', '.join(kinds)}; n/a: not recorded by the run)")
    return "\n".join(out)


def peak_memory(row: dict) -> str:
    """ "812 MiB", or n/a for a run that recorded none (trained before loraqa recorded it, or
    resumed after its last step). The kind (training/memory.py) is in the footer."""
    value = row.get("peak_memory_mib")
    return "n/a" if not isinstance(value, (int, float)) else f"{value:,.0f} MiB"


def _versus(comparison: dict | None) -> str:
    if not comparison:
        return "-"
    f1 = comparison["f1"]
    return f"{f1['difference']:+.2f} [{f1['low']:+.2f}, {f1['high']:+.2f}]"


def _num(value, unit: str = "", digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "run"
