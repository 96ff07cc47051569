"""Questions from a Hugging Face Hub dataset: `hub:NAME[:SPLIT]`, rows shaped like `rajpurkar/squad`.

Without a network `datasets` retries for about a minute and a half before giving up, so the hub's
reachability is checked first with one short connection; offline mode (HF_HUB_OFFLINE=1) reads the
local cache only and says so when the dataset is not there.
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlparse

from loraqa.errors import DataError

PREFIX = "hub:"
DEFAULT_SPLIT = "train"
CONNECT_TIMEOUT_S = 3.0
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_rows(source: str) -> list[tuple[str, Any]]:
    """`datasets.load_dataset(NAME, split=SPLIT)` as `(where, row)` pairs for `rows.parse_rows`.

    SPLIT defaults to "train". Any failure to fetch (unknown name or split, no network, offline
    and not cached) is a `DataError` naming the source, since the user fixes it by changing the
    source or the network; an unreachable hub fails within seconds, not after retries.
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
    offline = hub_offline()
    if not offline and not hub_reachable():
        raise DataError(
            source,
            f"cannot reach the Hugging Face Hub ({hub_endpoint()}): no network? Set HF_HUB_OFFLINE=1 to use a "
            "copy in the local datasets cache, or give a local file (.json, .jsonl, .csv)",
        )
    try:
        dataset = datasets.load_dataset(name, split=split)
        rows = list(dataset)
    except Exception as err:  # noqa: BLE001 - hub, network and cache errors have no common base class
        hint = "; HF_HUB_OFFLINE=1 allows only the local cache: load it once with a network" if offline else ""
        raise DataError(
            source, f"cannot load dataset {name!r} split {split!r}: {type(err).__name__}: {err}{hint}"
        ) from None
    return [(f"row {number}", row) for number, row in enumerate(rows, start=1)]


def hub_offline() -> bool:
    """Whether huggingface_hub (or datasets) was told to stay offline."""
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except ImportError:
        pass
    return any(
        os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co"


def hub_reachable(timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """One TCP connection to the hub's endpoint within `timeout` seconds. Behind a proxy the check
    is skipped (True): the direct route may be closed while the proxy works."""
    if any(os.environ.get(v) for v in _PROXY_VARIABLES):
        return True
    url = urlparse(hub_endpoint())
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False
