"""The one place that decides what happens to a bad record: raise, or (skip_invalid) count and drop."""

from __future__ import annotations

from loraqa.data.records import QARecord
from loraqa.data.validate import DUPLICATE_ID, RecordProblem, check_record_text, text_problem
from loraqa.errors import DataError


class RecordCollector:
    """Keeps the valid records of one source, in order, and raises or counts the invalid ones."""

    def __init__(self, path: str, *, skip_invalid: bool, max_context_chars: int):
        self.path = str(path)
        self.skip_invalid = skip_invalid
        self.max_context_chars = max_context_chars
        self.records: list[QARecord] = []
        self.skipped: dict[str, int] = {}
        self._first_seen: dict[str, str] = {}  # id -> where it first occurred, for duplicate messages

    def reject(self, record: str, problem: RecordProblem, count: int = 1) -> None:
        """Raise `DataError` for `record`, or with skip_invalid count `count` dropped questions."""
        if not self.skip_invalid:
            raise DataError(self.path, problem.problem, record) from None
        self.skipped[problem.kind] = self.skipped.get(problem.kind, 0) + max(count, 1)

    def add(self, record: QARecord, where: str) -> None:
        """Keep `record` unless a text is not valid Unicode or its id was used before (then the later one is bad)."""
        try:
            check_record_text(record)  # here, so that every format and `predict --input` share it
        except RecordProblem as problem:
            self.reject(record.id if text_problem(record.id) is None else where, problem)
            return
        first = self._first_seen.get(record.id)
        if first is not None:
            self.reject(record.id, RecordProblem(DUPLICATE_ID, f"duplicate id at {where}: first used at {first}"))
            return
        self._first_seen[record.id] = where
        self.records.append(record)

    def finish(self) -> list[QARecord]:
        """The kept records; a source with none left is an error even with skip_invalid."""
        if not self.records:
            problem = "no usable records"
            if self.skipped:
                counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.skipped.items()))
                problem += f" (all skipped as invalid: {counts})"
            raise DataError(self.path, problem)
        return self.records
