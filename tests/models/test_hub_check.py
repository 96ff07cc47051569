"""models/hub_check.py in-process: an unreachable hub with the model already cached switches this process
to offline mode (said in one note) instead of failing; a missing local path is named at once."""

from __future__ import annotations

import os
import socket

import pytest

from loraqa.errors import LoraqaError
from loraqa.models.hub_check import check_base_model


@pytest.fixture
def unreachable_hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: connecting is refused at once
    for name in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_a_cached_model_is_used_offline_when_the_hub_is_unreachable(unreachable_hub, monkeypatch, capsys):
    (unreachable_hub / "models--org--tiny" / "snapshots" / "abc123").mkdir(parents=True)
    check_base_model("org/tiny")
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert "using the cached copy of org/tiny (HF_HUB_OFFLINE=1)" in capsys.readouterr().err
    monkeypatch.delenv("HF_HUB_OFFLINE")


def test_an_uncached_model_is_one_error_naming_the_offline_models(unreachable_hub):
    with pytest.raises(LoraqaError, match="HF_HUB_OFFLINE=1") as caught:
        check_base_model("org/tiny")
    assert "minilm-l6" in str(caught.value) and "HF_HUB_OFFLINE" not in os.environ


def test_a_missing_local_directory_is_named(tmp_path):
    with pytest.raises(LoraqaError, match="no such directory"):
        check_base_model(str(tmp_path / "absent-model"))
