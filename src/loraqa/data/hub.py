"""Questions from a Hugging Face Hub dataset: `hub:NAME[:SPLIT]`, rows shaped like `rajpurkar/squad`."""

from __future__ import annotations

from typing import Any

from loraqa.errors import DataError

PREFIX = "hub:"
DEFAULT_SPLIT = "train"


def hub_rows(source: str) -> list[tuple[str, Any]]:
    """`datasets.load_dataset(NAME, split=SPLIT)` as `(where, row)` pairs for `rows.parse_rows`.

    SPLIT defaults to "train". Any failure to fetch (unknown name or split, no network) is a
    `DataError` naming the source, since the user fixes it by changing the source.
    """
    name, _, split = source[len(PREFIX) :].partition(":")
    if not name.strip():
        raise DataError(
            source, "a hub source needs a dataset name: hub:NAME[:SPLIT], e.g. hub:rajpurkar/squad:validation"
        )
    split = split or DEFAULT_SPLIT
    try:
        import datasets  # imported here: it is slow to import and only hub sources need it
    except ImportError:
        raise DataError(source, "hub: sources need the 'datasets' package (pip install datasets)") from None
    try:
        dataset = datasets.load_dataset(name, split=split)
        rows = list(dataset)
    except Exception as err:  # noqa: BLE001 - hub, network and cache errors have no common base class
        raise DataError(source, f"cannot load dataset {name!r} split {split!r}: {type(err).__name__}: {err}") from None
    return [(f"row {number}", row) for number, row in enumerate(rows, start=1)]
