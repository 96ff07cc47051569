"""Whether a base model can be had at all, found out before torch loads and in seconds.

A hub model that is neither on this machine nor reachable would otherwise cost transformers' and
huggingface_hub's retries (half a minute to minutes) before an error that never mentions the offline
models. One short connection (data/hub.py's) decides instead: unreachable and not cached is one line
naming HF_HUB_OFFLINE and the closest known names; unreachable but cached turns offline mode on for
this process, so the libraries read the cache without asking the network first.
"""

from __future__ import annotations

import os
from pathlib import Path

from loraqa.console import say
from loraqa.data.hub import hub_endpoint, hub_offline, hub_reachable
from loraqa.errors import LoraqaError
from loraqa.models.offline import OFFLINE_MODELS
from loraqa.suggest import did_you_mean


def check_base_model(name: str, revision: str | None = None) -> None:
    """Raise LoraqaError when `name` is a missing local path, or a hub id that is neither cached
    nor reachable. Offline model names and existing directories pass untouched."""
    if name in OFFLINE_MODELS or Path(name).expanduser().exists():
        return
    if name.startswith(("/", "./", "../", "~")):
        raise LoraqaError(f"model '{name}': no such directory{did_you_mean(name, known_model_names())}")
    if hub_offline():
        return  # the user chose the cache; transformers names a model missing from it without retrying
    cached = is_cached(name)
    if hub_reachable():
        return
    if cached:
        os.environ["HF_HUB_OFFLINE"] = "1"  # read before huggingface_hub is first imported
        say(
            f"note: the Hugging Face Hub ({hub_endpoint()}) is unreachable; using the cached copy of {name} "
            "(HF_HUB_OFFLINE=1)"
        )
        return
    close = did_you_mean(name, [known for known in known_model_names() if known != name])  # not gpt2 for gpt2
    raise LoraqaError(
        f"cannot fetch model '{name}': the Hugging Face Hub ({hub_endpoint()}) is unreachable (no network?)"
        f"{close or ';'} models that need no hub: {', '.join(OFFLINE_MODELS)}, or a local model directory; "
        "HF_HUB_OFFLINE=1 uses only models already downloaded"
    )


def known_model_names() -> list[str]:
    """Offline names first, then the shipped configs' bases and the offline models' hub ids."""
    from loraqa.config.shipped import shipped_bases

    names = [*OFFLINE_MODELS, *shipped_bases(), *(model.hub_id for model in OFFLINE_MODELS.values())]
    return list(dict.fromkeys(names))


def is_cached(name: str) -> bool:
    """Whether huggingface_hub's cache holds a snapshot of the model repository `name`."""
    from huggingface_hub import constants  # light: the package imports its parts lazily

    folder = Path(constants.HF_HUB_CACHE) / f"models--{name.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.iterdir())
