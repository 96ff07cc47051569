"""loraqa's Python API: train an adapter, evaluate it, load it and answer questions.

    import loraqa
    qa = loraqa.load("runs/minilm-l6-squad/adapter")       # or a run directory, or a base model name
    qa.answer(question="Who?", context="...")             # -> Answer(text, confidence, start, end, no_answer, ...)
    qa.answer_batch([("Who?", "..."), {"question": "When?", "context": "..."}])
    result = loraqa.train("minilm-l6-squad", overrides={"lora.r": 16}, name="r16")

Overrides are the CLI's `section.key=value` settings, given as a dict with dotted keys
(`overrides={"training.max_steps": 50}`) and/or as keyword arguments: top-level keys as they are
(`name="r16"`), nested ones with `__` for the dot (`training__max_steps=50`). Errors are the
CLI's: a `LoraqaError` whose message is one line. Heavy libraries load on first use, so
`import loraqa` stays fast.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loraqa.errors import LoraqaError
from loraqa.inference.answer import Answer

if TYPE_CHECKING:
    from loraqa.runs.summary import RunSummary


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    adapter: Path
    metrics: dict  # the adapter's test metrics (exact_match, f1, ...)
    summary: RunSummary  # the run's summary.json, typed (loraqa.runs.summary)


class QA:
    """A loaded model (base, or base + adapter, merged) that answers questions. Made by `load`."""

    def __init__(self, ready, config):
        self._ready, self._config = ready, config

    @property
    def formulation(self) -> str:
        return self._ready.spec.formulation.name

    def answer(self, question: str, context: str, min_confidence: float | None = None) -> Answer:
        """The answer to one question about `context` (withheld below `min_confidence`, see answer_batch).
        Errors name the parameter: "question is empty"."""
        return self._answer([self._record(question, context, "q0", "")], min_confidence)[0]

    def answer_batch(
        self, records: Iterable[Mapping[str, str] | Sequence[str]], min_confidence: float | None = None
    ) -> list[Answer]:
        """Answers in order, for (question, context) pairs or dicts with "question" and "context";
        batched by length as `loraqa predict` batches them (evaluation.batch_size per batch).
        Confidences are calibrated when the adapter carries a calibration; an answer below
        `min_confidence` (a probability) is withheld: text "", abstained True. Errors name the
        record by its position: "record 2: question is empty"."""
        checked = [
            self._record(*_pair(item, index), f"q{index}", f"record {index}: ") for index, item in enumerate(records)
        ]
        return self._answer(checked, min_confidence)

    def _record(self, question, context, qid: str, where: str):
        """The checked record, or a LoraqaError worded for the API (`where` prefixes it)."""
        from loraqa.data.validate import CONTEXT_TOO_LONG, RecordProblem
        from loraqa.inference.predict import question_record

        if not isinstance(question, str) or not isinstance(context, str):
            raise LoraqaError(f"{where}question and context must be strings")
        try:
            return question_record(question, context, self._config.data, qid)
        except RecordProblem as problem:
            hint = ""
            if problem.kind == CONTEXT_TOO_LONG:
                hint = "; to allow it, load with overrides={'data.max_context_chars': N}"
            raise LoraqaError(f"{where}{problem.problem}{hint}") from None

    def _answer(self, checked: list, min_confidence: float | None) -> list[Answer]:
        if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence: {min_confidence} is not a probability in [0, 1]")
        from loraqa.inference.answer import answer

        return answer(self._ready, self._config, checked, min_confidence=min_confidence) if checked else []


def load(
    path_or_model_name: str | Path, device: str = "auto", overrides: Mapping[str, Any] | None = None, **kwargs: Any
) -> QA:
    """A QA for an adapter directory, a run directory (its `adapter/`), or a base model name alone.

    An adapter answers with the settings it was trained with (its loraqa.json); `overrides` may
    change what inference may (model.max_seq_length, evaluation.batch_size, generation.decoding...).
    """
    settings = _override_list(overrides, kwargs)
    with _api_words():
        return _load(path_or_model_name, device, settings)


def _load(path_or_model_name: str | Path, device: str, settings: list[str]) -> QA:
    from loraqa.config.loader import load_config
    from loraqa.inference.ready import load_for_answering

    config = load_config(None, [f"training.device={device}", *settings])
    target = Path(path_or_model_name).expanduser()
    adapter = None
    if (target / "adapter_config.json").is_file():
        adapter = target
    elif (target / "adapter" / "adapter_config.json").is_file():
        adapter = target / "adapter"
    elif target.exists() and target.is_dir() and not (target / "config.json").is_file():
        raise LoraqaError(f"{target}: neither an adapter (adapter_config.json), a run directory nor a model directory")
    if adapter is None:
        config = load_config(None, [f"training.device={device}", f"model.name={path_or_model_name}", *settings])
    return QA(load_for_answering(config, adapter, overrides=settings), config)


def train(
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    **kwargs: Any,
) -> RunResult:
    """Train an adapter as `loraqa train CONFIG key=value...` does (config: a YAML path, a shipped
    config's name such as "minilm-l6-squad", or None for the defaults)."""
    from loraqa.config.loader import load_config
    from loraqa.pipeline import run_training
    from loraqa.runs.files import ADAPTER_DIR
    from loraqa.runs.summary import RunSummary

    with _api_words():
        run_config = load_config(str(config) if config is not None else None, _override_list(overrides, kwargs))
        summary = RunSummary.from_dict(run_training(run_config, resume=resume, overwrite=overwrite))
    run_dir = Path(summary.run_dir)
    return RunResult(run_dir, run_dir / ADAPTER_DIR, summary.adapter, summary)


def evaluate(
    config: str | Path | None = None,
    adapter: str | Path | None = None,
    *,
    output: str | Path | None = None,
    overwrite: bool = False,
    overrides: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, dict]:
    """Evaluate a base model or an adapter as `loraqa eval` does; returns metrics by decoding."""
    from loraqa.config.loader import load_config
    from loraqa.inference.eval_command import run_evaluation

    settings = _override_list(overrides, kwargs)
    with _api_words():
        run_config = load_config(str(config) if config is not None else None, settings)
        return run_evaluation(
            run_config,
            adapter=str(adapter) if adapter else None,
            decodings=[run_config.generation.decoding],
            output=str(output) if output else None,
            overwrite=overwrite,
            overrides=settings,
        )


# The CLI's flags in the pipeline's messages, as the API's parameters: the pipeline words its errors
# for the command line, which most users meet first; the API rewords them here, in one place.
_API_PARAMETERS = {
    "--resume": "resume=True",
    "--overwrite": "overwrite=True",
    "--output DIR": "output=DIR",
    "--output": "output",
    "--model NAME": "overrides={'model.name': NAME}",
    "--model": "overrides={'model.name': ...}",
    "--adapter": "adapter",
}
_FLAG = re.compile("|".join(re.escape(flag) for flag in sorted(_API_PARAMETERS, key=len, reverse=True)) + r"(?![\w-])")
_MODEL_NAMED = re.compile(r"--model (?!NAME\b)([^\s,;]+)")  # "--model gpt2": the override with that name


@contextlib.contextmanager
def _api_words():
    """Re-raise a LoraqaError (same type) with the API's parameter names where it names a CLI flag."""
    try:
        yield
    except LoraqaError as error:
        if error.args and isinstance(error.args[0], str):
            message = _MODEL_NAMED.sub(lambda match: f"overrides={{'model.name': {match.group(1)!r}}}", error.args[0])
            error.args = (_FLAG.sub(lambda match: _API_PARAMETERS[match.group(0)], message), *error.args[1:])
        raise


def _override_list(overrides: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> list[str]:
    """`key=value` strings, as the command line gives them, from a dotted-key dict and `a__b=` kwargs."""
    import json

    merged = {**(overrides or {}), **{key.replace("__", "."): value for key, value in kwargs.items()}}
    items = []
    for key, value in merged.items():
        text = value if isinstance(value, str) else json.dumps(value)
        items.append(f"{key}={text}")
    return items


def _pair(item, index: int) -> tuple:
    if isinstance(item, Mapping):
        return item.get("question"), item.get("context")
    if isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
        return item[0], item[1]
    raise LoraqaError(f"record {index}: expected a (question, context) pair or a dict with question and context")
