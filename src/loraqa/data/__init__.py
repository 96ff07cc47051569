"""The data layer: load SQuAD-style sources into validated `QARecord`s, then sample and split them.

Start at `sources.load_records`; `splits` holds the seeded subsets; `prepare` builds a run's splits.
"""

from loraqa.data.records import Answer, QARecord
from loraqa.data.sources import LoadResult, load_records
from loraqa.data.splits import sample_records, split_train_validation

__all__ = ["Answer", "QARecord", "LoadResult", "load_records", "sample_records", "split_train_validation"]
