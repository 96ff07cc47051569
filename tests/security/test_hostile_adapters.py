"""A hostile adapter is refused in one line by every way of loading one, before it changes anything.

One real adapter (tiny BERT, trained once for the module) is copied and made hostile in each way an
attacker or a broken tool could: base weights smuggled into its weights file, NaN/inf weights, a NaN
or 1e300 `lora_alpha`, int8 weights, absurd ranks, a directory, device, FIFO or oversized file where a
file belongs, and a loraqa.json naming a pickle base or a hub base. Each must end `predict`, `eval`,
`merge`, `serve` (as the only adapter, and joining a good one's base) and `loraqa.load` with one
line naming the problem (exit 2 for the commands), and nothing may reach the network: every socket
connection and name lookup of the process is counted and refused while these tests run.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import pytest
import torch
from run_helpers import block_network, one_line_error, run_cli, tiny_overrides
from safetensors.torch import load_file, save_file

from loraqa.cli import main
from loraqa.errors import LoraqaError

QUESTION = ("--question", "Who founded Avalon?", "--context", "The town of Avalon was founded in 1800 by Ada.")
ENTRY_POINTS = ("predict", "eval", "merge", "serve", "serve-shared", "api")
API_MODEL_HINT = "add overrides={'model.name': 'someone/a-base-never-downloaded'}"
GIB = 1024**3


@pytest.fixture(scope="module")
def trained_bert(tiny_model_dir, qa_files, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("hostile") / "bert-run"
    assert main(["train", *tiny_overrides(tiny_model_dir("bert"), qa_files, out)]) == 0
    return out / "adapter"


@pytest.fixture(autouse=True)
def network_calls(monkeypatch) -> list:
    """Every outgoing connection or name lookup, refused and recorded; none may happen."""
    calls = block_network(monkeypatch)
    yield calls
    assert calls == [], f"network contacted: {calls}"


# ---- ways to make the adapter hostile (each edits a copy in place) ----------------------------------


def _weights(change):
    def damage(adapter, *_):
        path = adapter / "adapter_model.safetensors"
        tensors = load_file(str(path))
        change(tensors)
        save_file(tensors, str(path), metadata={"format": "pt"})

    return damage


def _fill(part: str, value: float):
    return _weights(lambda t: [t[k].fill_(value) for k in t if part in k])


def _int8(tensors):
    for key in [k for k in tensors if "lora_" in k]:
        tensors[key] = tensors[key].to(torch.int8)


def _config_text(old: str, new: str):
    def damage(adapter, *_):
        path = adapter / "adapter_config.json"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    return damage


def _config(**values):
    def damage(adapter, *_):
        path = adapter / "adapter_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **values}))

    return damage


def _weights_replaced_by(make):
    def damage(adapter, *_):
        path = adapter / "adapter_model.safetensors"
        path.unlink()
        make(path)

    return damage


def _oversized(path: pathlib.Path) -> None:
    with open(path, "wb") as handle:
        handle.truncate(5 * GIB)  # sparse: no disk space used


def _fifo_meta(adapter, *_):
    (adapter / "loraqa.json").unlink()
    os.mkfifo(adapter / "loraqa.json")


def _padded_config(adapter, *_):
    path = adapter / "adapter_config.json"
    path.write_text(path.read_text() + " " * (2 * 1024 * 1024))


class PickleBomb:
    """Unpickling it writes its marker file: what torch.load of a hostile pytorch_model.bin would run."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.write_text, (self.marker, "the pickle ran")


def _base_named(make_base):
    def damage(adapter, tmp_path, real_base):
        name = make_base(tmp_path, real_base)
        path = adapter / "loraqa.json"
        meta = json.loads(path.read_text())
        meta["base_model"] = meta["model_config"]["name"] = name
        meta["base"] = (
            {"name": name, "kind": "hub"}
            if "/" in name and not name.startswith("/")
            else {"name": name, "kind": "local", "path": name}
        )
        path.write_text(json.dumps(meta))

    return damage


def _pickle_base(tmp_path, real_base) -> str:
    """The real base's config.json beside a pickle in place of its safetensors weights."""
    base = tmp_path / "pickle-base"
    base.mkdir()
    shutil.copy(real_base / "config.json", base / "config.json")
    torch.save(PickleBomb(tmp_path / "pickle-ran.marker"), base / "pytorch_model.bin")
    return str(base)


def _hub_base(tmp_path, real_base) -> str:
    return "someone/a-base-never-downloaded"


HOSTILE = {
    "base tensor smuggled in": (
        _weights(
            lambda t: t.__setitem__("base_model.model.bert.embeddings.word_embeddings.weight", torch.zeros(30522, 32))
        ),
        "tensor 'base_model.model.bert.embeddings.word_embeddings.weight' is not part of this adapter",
    ),
    "NaN weights": (_fill("lora_A", float("nan")), "holds NaN or infinite values"),
    "infinite weights": (_fill("lora_B", float("inf")), "holds NaN or infinite values"),
    "NaN lora_alpha": (_config_text('"lora_alpha": 16', '"lora_alpha": NaN'), "key 'lora_alpha' must be a finite"),
    "1e300 lora_alpha": (_config(lora_alpha=1e300), "is not a finite float32 number"),
    "int8 weights": (_weights(_int8), "is I8; adapter weights are floating point"),
    "rank 2**70": (_config(r=2**70), "key 'r' must be a rank from 1 to 65536"),
    "rank beyond the layers": (_config(r=64), "is more than any adapted layer can use (the widest"),
    "weights file a directory": (
        _weights_replaced_by(lambda p: p.mkdir()),
        "adapter_model.safetensors: is a directory",
    ),
    "weights file a device": (
        _weights_replaced_by(lambda p: p.symlink_to("/dev/zero")),
        "adapter_model.safetensors: is not a regular file",
    ),
    "weights file oversized": (_weights_replaced_by(_oversized), "over the 4,096 MiB limit"),
    "loraqa.json a FIFO": (_fifo_meta, "loraqa.json: is not a regular file"),
    "adapter_config.json oversized": (_padded_config, "adapter_config.json: is 2.0 MiB, over the 1 MiB limit"),
    "pickle base in loraqa.json": (_base_named(_pickle_base), "a directory without safetensors weights"),
    "missing local base in loraqa.json": (
        _base_named(lambda tmp_path, _: str(tmp_path / "gone")),
        "which is not a directory here; give the base with --model",
    ),
    "hub base in loraqa.json": (
        _base_named(_hub_base),
        "names base 'someone/a-base-never-downloaded', which is not in the local model cache; loraqa contacts "
        "the model hub only for a base you name: add --model someone/a-base-never-downloaded",
    ),
}


@pytest.fixture
def hostile(trained_bert, tiny_model_dir, tmp_path, request):
    adapter = tmp_path / "hostile-adapter"
    shutil.copytree(trained_bert, adapter)
    damage, expected = HOSTILE[request.param]
    damage(adapter, tmp_path, tiny_model_dir("bert"))
    yield adapter, expected
    assert not (tmp_path / "pickle-ran.marker").exists(), "the base's pickle ran"


def _command(entry: str, adapter: pathlib.Path, good: pathlib.Path, qa_files, out: pathlib.Path) -> list[str]:
    return {
        "predict": ["predict", "--adapter", str(adapter), *QUESTION],
        "eval": [
            "eval",
            f"data.test={qa_files['test']}",
            "training.device=cpu",
            "--adapter",
            str(adapter),
            "--output",
            str(out),
        ],
        "merge": ["merge", "--adapter", str(adapter), "--output", str(out)],
        "serve": ["serve", "--adapter", f"evil={adapter}"],  # refused while the registry loads, before listening
        "serve-shared": ["serve", "--adapter", f"good={good}", "--adapter", f"evil={adapter}"],
    }[entry]


@pytest.mark.parametrize("hostile", list(HOSTILE), indirect=True)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_refuses_a_hostile_adapter_in_one_line(
    hostile, entry, trained_bert, qa_files, tmp_path, capsys, monkeypatch
):
    adapter, expected = hostile
    if entry.startswith("serve"):
        pytest.importorskip("fastapi")
        import uvicorn

        def started(*args, **kwargs):  # an adapter let through would otherwise serve until killed
            raise AssertionError("the server started with the hostile adapter")

        monkeypatch.setattr(uvicorn, "run", started)
    out = tmp_path / "out"
    if entry == "api":
        import loraqa

        with pytest.raises(LoraqaError) as caught:
            loraqa.load(adapter, device="cpu")
        line = str(caught.value)
        assert "\n" not in line
    else:
        code, _, err = run_cli(capsys, *_command(entry, adapter, trained_bert, qa_files, out))
        line = one_line_error(err)
        assert code == 2, line
    if entry == "api":  # the API names its own parameters where the command line names a flag
        expected = expected.replace("add --model someone/a-base-never-downloaded", API_MODEL_HINT)
        expected = expected.replace("with --model", "with overrides={'model.name': ...}")
    assert expected in line, line
    assert not out.exists()  # nothing written for a refused adapter


# ---- the rules are no stricter than they must be -------------------------------------------------------


def test_the_untouched_adapter_answers_and_an_adapter_of_another_rank_loads(trained_bert, tmp_path, capsys):
    """The checks pass a real adapter; they refuse tensors by what the config implies, not a fixed list."""
    code, out, err = run_cli(capsys, "predict", "--adapter", str(trained_bert), *QUESTION)
    assert code == 0 and "confidence" in out, err
    shapes = {k: v.shape for k, v in load_file(str(trained_bert / "adapter_model.safetensors")).items()}
    assert {shapes[k][0] for k in shapes if "lora_A" in k} == {8}


def test_a_hub_base_the_adapter_names_loads_from_the_local_cache_without_the_network(
    trained_bert, tiny_model_dir, tmp_path, monkeypatch, capsys
):
    """A hub base already in the cache (as after training on it) is used from there: no --model needed."""
    import huggingface_hub.constants

    cache = tmp_path / "hub-cache"
    snapshot = cache / "models--someone--tiny-bert" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model_dir("bert"), snapshot)
    (cache / "models--someone--tiny-bert" / "refs").mkdir()
    (cache / "models--someone--tiny-bert" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    adapter = tmp_path / "adapter"
    shutil.copytree(trained_bert, adapter)
    _base_named(lambda *_: "someone/tiny-bert")(adapter, tmp_path, None)
    code, out, err = run_cli(capsys, "predict", "--adapter", str(adapter), *QUESTION)
    assert code == 0 and "confidence" in out, err


def test_a_hub_base_the_user_names_is_asked_of_the_hub(trained_bert, network_calls, capsys):
    """The counter sees a hub request when the user asks for one (--model): the no-network checks above
    would see one too."""
    code, _, err = run_cli(
        capsys, "predict", "--model", "someone/a-base-never-downloaded", "--adapter", str(trained_bert), *QUESTION
    )
    assert code == 2 and one_line_error(err)
    assert network_calls, "no request was counted"
    network_calls.clear()  # asked for by the user: allowed here
