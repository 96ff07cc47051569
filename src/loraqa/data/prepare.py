"""The three splits a run uses, from the `data` config section.

train: a seeded subset of `data.train`; validation (model selection): `data.validation` or, by
default, a seeded slice of train that shares no context with the rest; test: `data.test` (the
official dev set by default), optionally a seeded subset. Deterministic for a given `data.seed`.

Validation exists only when something reads it (`config.validate.needs_validation`): a run that
never evaluates during training keeps every training question. A slice carved from train is at
most a tenth of it (at least one question), so a small data set still trains.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from loraqa.config.schema import DataConfig
from loraqa.data.leakage import split_leakage
from loraqa.data.records import QARecord
from loraqa.data.sources import LoadResult, load_records
from loraqa.data.splits import sample_paragraphs, sample_records, split_train_validation
from loraqa.errors import DataError


@dataclass
class RunData:
    train: list[QARecord]
    validation: list[QARecord]
    test: list[QARecord]
    version_2: bool
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    leakage: dict[str, dict] = field(default_factory=dict)  # per held-out split: SplitLeakage.as_dict()


def _load(source: str, data: DataConfig, skipped: dict[str, dict[str, int]]) -> LoadResult:
    result = load_records(
        source,
        skip_invalid=data.skip_invalid,
        version_2=data.version_2_with_negative,
        max_context_chars=data.max_context_chars,
    )
    if result.skipped:
        skipped[source] = dict(result.skipped)
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(result.skipped.items()))
        print(f"loraqa: skipped invalid records in {source}: {counts}", file=sys.stderr)
    return result


def load_test(data: DataConfig) -> tuple[list[QARecord], bool]:
    skipped: dict[str, dict[str, int]] = {}
    result = _load(data.test, data, skipped)
    return sample_records(result.records, data.test_samples, data.seed), result.version_2


# A carved validation slice takes at most this share of the training questions.
MAX_CARVED_SHARE = 0.1


def carved_validation_size(requested: int, train_questions: int) -> int:
    """How many validation questions to carve from `train_questions`: `requested`, capped at a
    tenth of them but at least 1 (0 only when 0 is requested)."""
    if requested <= 0:
        return 0
    return min(requested, max(1, int(train_questions * MAX_CARVED_SHARE)))


def load_run_data(data: DataConfig, *, validation: bool = True, validation_if_v2: bool = False) -> RunData:
    """The run's three splits. With `validation=False` (nothing evaluates during training, see
    `needs_validation`) no validation split is made and train keeps every question, unless
    `validation_if_v2` and train is SQuAD v2 (a no-answer threshold is to be chosen on validation)."""
    skipped: dict[str, dict[str, int]] = {}
    train_result = _load(data.train, data, skipped)
    validation = validation or (validation_if_v2 and train_result.version_2)
    if not validation or data.validation_samples == 0:
        rest, validation_records = train_result.records, []
    elif data.validation is None:
        # Carve validation out first, then subsample train, so train_samples does not change validation.
        size = carved_validation_size(data.validation_samples, len(train_result.records))
        if size < data.validation_samples:
            print(
                f"loraqa: note: {data.train} has {len(train_result.records)} questions; carving {size} for "
                f"validation instead of data.validation_samples={data.validation_samples} (at most a tenth of train)",
                file=sys.stderr,
            )
        rest, validation_records = split_train_validation(train_result.records, size, data.seed, source=data.train)
    else:
        rest = train_result.records
        validation_records = sample_records(
            _load(data.validation, data, skipped).records, data.validation_samples, data.seed
        )
    draw = sample_paragraphs if data.train_sampling == "paragraphs" else sample_records
    train = draw(rest, data.train_samples, data.seed)
    test_result = _load(data.test, data, skipped)
    test = sample_records(test_result.records, data.test_samples, data.seed)
    version_2 = train_result.version_2 or test_result.version_2
    run_data = RunData(train, validation_records, test, version_2, skipped)
    check_leakage(run_data, data)
    return run_data


def check_leakage(run_data: RunData, data: DataConfig) -> None:
    """Count validation and test contexts/questions also in train (`data.leakage` says what then):
    recorded in `run_data.leakage`, printed, and with "error" a DataError when any context leaked."""
    if data.leakage == "ignore":
        return
    for split, records, source in (
        ("validation", run_data.validation, data.validation or data.train),
        ("test", run_data.test, data.test),
    ):
        if not records:
            continue
        found = split_leakage(run_data.train, records, split)
        run_data.leakage[split] = found.as_dict()
        if found.leaked:
            print(
                f"loraqa: {'error' if data.leakage == 'error' else 'warning'}: leakage: {found.describe()}",
                file=sys.stderr,
            )
        if data.leakage == "error" and found.exact_contexts + found.near_contexts:
            raise DataError(source, f"{split} shares contexts with train ({found.describe()}); data.leakage=error")
