"""The adapters a server answers with, loaded once at start-up and fixed for its lifetime.

Each base model is loaded once. Adapters that fit the same loaded base (same weights, same
vocabulary, same segment-id handling) share it as peft named adapters, switched with
`set_adapter` before each batch; a base with a single adapter has it merged, exactly as
`loraqa predict` loads it. Adapters on different bases get their own base. `--base-only` on a
base some adapters already use joins their group (which then stays unmerged) and answers inside
peft's `disable_adapter()`, so the base is not loaded a second time.

Nothing here is reachable from a request: the HTTP layer only calls `answer` and `describe`
with the name of an adapter already in the registry.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from loraqa.config.schema import RunConfig
from loraqa.data.records import QARecord
from loraqa.errors import AdapterError, FlagError
from loraqa.inference.predict import answer
from loraqa.lora.adapter import read_adapter_meta, read_lora_config
from loraqa.lora.adapter_weights import check_adapter_weights
from loraqa.inference.ready import ReadyModel, load_ready_model, model_config_for_adapter
from loraqa.models.loading import inspect_base, load_adapter_tokenizer, load_tokenizer
from loraqa.device import plan_device
from loraqa.runs.files import METRICS_FILE

BASE_ONLY_NAME = "base"
FIRST_PEFT_NAME = "default"  # the name PeftModel.from_pretrained gives the first adapter on a base
BASE_PEFT_NAME = "__base__"  # peft's own name for "no adapter" (mixed batches); here: answer with adapters disabled


@dataclass(frozen=True)
class AdapterSource:
    """`--adapter NAME=DIR` as given on the command line."""

    name: str
    directory: Path


def parse_adapter_arg(text: str) -> AdapterSource:
    """`NAME=DIR` -> AdapterSource; the name is what clients send as `adapter`."""
    name, sep, directory = text.partition("=")
    name = name.strip()
    if not sep or not name or not directory.strip():
        raise FlagError("--adapter", f"expected NAME=DIR (e.g. squad=runs/A/adapter), got {text!r}")
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise FlagError("--adapter", f"adapter name {name!r}: use letters, digits, '-', '_' or '.'")
    return AdapterSource(name, Path(directory.strip()))


@dataclass
class ServedAdapter:
    name: str
    ready: ReadyModel  # model possibly shared with other adapters (then peft_name selects this one)
    peft_name: str | None  # None: the model answers as this adapter alone (merged, or a bare base)
    info: dict  # what GET /v1/adapters shows (no paths)


class Registry:
    """Adapters by name, the config their answers are made with, and the default adapter."""

    def __init__(self, adapters: Sequence[ServedAdapter], config: RunConfig):
        if not adapters:
            raise FlagError("--adapter", "nothing to serve: give --adapter NAME=DIR or --base-only")
        self.adapters = {a.name: a for a in adapters}
        self.default = adapters[0].name
        self.config = config

    def names(self) -> list[str]:
        return list(self.adapters)

    def formulation(self, name: str) -> str:
        return self.adapters[name].ready.spec.formulation.name

    def answer(self, name: str, records: list[QARecord], decoding: str | None) -> list[dict]:
        """The rows `loraqa predict` prints for these records (answer, confidence); runs the model.

        Callers run this in one worker thread: switching the active adapter and answering must
        not interleave with another batch on the same base.
        """
        served = self.adapters[name]
        if served.peft_name == BASE_PEFT_NAME:
            with served.ready.model.disable_adapter():  # the shared base's own weights and heads
                return answer(served.ready, self.config, records, decoding)
        if served.peft_name is not None:
            served.ready.model.set_adapter(served.peft_name)
        return answer(served.ready, self.config, records, decoding)

    def describe(self) -> list[dict]:
        return [{"name": a.name, "default": a.name == self.default, **a.info} for a in self.adapters.values()]


def build_registry(
    sources: Sequence[AdapterSource], config: RunConfig, base_name: str | None = None, base_only: bool = False
) -> Registry:
    """Load every adapter (and with `base_only` the base `base_name` or config.model.name alone)."""
    names = [s.name for s in sources] + ([BASE_ONLY_NAME] if base_only else [])
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise FlagError("--adapter", f"adapter name '{repeated[0]}' given twice")
    groups: dict[tuple, list[tuple]] = {}
    for source in sources:
        source = AdapterSource(source.name, Path(source.directory))
        meta = read_adapter_meta(source.directory)
        model_config = model_config_for_adapter(source.directory, config.model, base_name)
        spec = inspect_base(model_config)
        groups.setdefault(_base_key(spec, model_config, meta, source.directory), []).append(
            (source, meta, model_config, spec)
        )
    base_only_entry = _base_only_entry(config, base_name) if base_only else None
    if base_only_entry is not None and base_only_entry[0] in groups:
        groups[base_only_entry[0]].append(base_only_entry[1])  # shares the adapters' base: not loaded twice
        base_only_entry = None
    served: dict[str, ServedAdapter] = {}
    for members in groups.values():
        for adapter in _load_group(members, config):
            served[adapter.name] = adapter
    if base_only_entry is not None:  # no adapter on this base: load it alone
        _, (_, tokenizer, model_config, spec) = base_only_entry
        ready = load_ready_model(model_config, _plan(config, spec), None, spec=spec, tokenizer=tokenizer)
        served[BASE_ONLY_NAME] = ServedAdapter(BASE_ONLY_NAME, ready, None, _info(ready, None, shared=False))
    return Registry([served[n] for n in names], config)


def _base_only_entry(config: RunConfig, base_name: str | None) -> tuple[tuple, tuple]:
    """The base-only member (source None) and the key it shares a base under (as `_base_key` builds it)."""
    model_config = dataclasses.replace(config.model, name=base_name) if base_name else config.model
    spec = inspect_base(model_config)
    tokenizer = load_tokenizer(spec, model_config)
    # The rows load_model gives the base alone: its own, grown to the tokenizer when tokens were added.
    rows = max(int(spec.hf_config.vocab_size), len(tokenizer))
    key = (spec.path, model_config.revision, spec.formulation.auto_model_class().__name__,
           model_config.use_token_type_ids, rows)  # fmt: skip
    return key, (None, tokenizer, model_config, spec)


def _base_key(spec, model_config, meta: dict, directory: Path) -> tuple:
    """Adapters with equal keys can share one loaded base: same weights, rows and segment handling."""
    task_type = read_lora_config(directory).task_type  # the checked adapter_config.json (adapter_files.py)
    return (
        spec.path,
        model_config.revision,
        spec.formulation.auto_model_class().__name__,
        model_config.use_token_type_ids or task_type == "QUESTION_ANS",  # QA-task adapters rewrite segment weights
        int(meta["embedding_rows"]) if "embedding_rows" in meta else None,
    )


def _load_group(members: list[tuple], config: RunConfig) -> list[ServedAdapter]:
    """Members are (source, meta, model_config, spec) of adapters on one base, the first an adapter;
    a base-only member is (None, base tokenizer, model_config, spec)."""
    first_source, _, first_config, first_spec = members[0]
    plan = _plan(config, first_spec)
    if len(members) == 1:  # merged, as `loraqa predict` loads it
        ready = load_ready_model(first_config, plan, str(first_source.directory), spec=first_spec)
        return [ServedAdapter(first_source.name, ready, None, _info(ready, first_source.directory, shared=False))]
    # Several adapters on one base: the first attaches through load_adapter (its checks and resizing),
    # the others join it as named adapters, unmerged, so one set of base weights serves them all.
    first = load_ready_model(first_config, plan, str(first_source.directory), merge=False, spec=first_spec)
    peft_model = first.model
    served = [ServedAdapter(first_source.name, first, FIRST_PEFT_NAME, _info(first, first_source.directory, True))]
    for index, (source, meta, model_config, spec) in enumerate(members[1:], start=1):
        if source is None:  # --base-only on this base: the same model, adapters disabled while it answers
            ready = ReadyModel(peft_model, meta, spec, model_config, None)
            served.append(ServedAdapter(BASE_ONLY_NAME, ready, BASE_PEFT_NAME, _info(ready, None, shared=True)))
            continue
        _check_same_base(source.directory, meta, spec)
        peft_name = f"adapter{index}"
        try:
            # Registered from the checked config first, so peft's load_adapter never reads adapter_config.json itself.
            lora_config = read_lora_config(source.directory, base_path=spec.path)
            lora_config.inference_mode = True
            rows = int(meta.get("embedding_rows", peft_model.get_input_embeddings().weight.shape[0]))
            base_class = type(peft_model.get_base_model())
            check_adapter_weights(source.directory, lora_config, base_class, spec.hf_config, rows)
            peft_model.add_adapter(peft_name, lora_config)
            peft_model.load_adapter(str(source.directory), adapter_name=peft_name, is_trainable=False)
        except (RuntimeError, ValueError, KeyError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AdapterError(
                f"{source.directory} does not fit base '{model_config.name}': {first_line[:300]}"
            ) from None
        tokenizer = load_adapter_tokenizer(spec, source.directory)
        ready = ReadyModel(peft_model, tokenizer, spec, model_config, str(source.directory))
        served.append(ServedAdapter(source.name, ready, peft_name, _info(ready, source.directory, True)))
    peft_model.eval()
    return served


def _check_same_base(directory: Path, meta: dict, spec) -> None:
    # The same check load_adapter makes before attaching (kept here until it takes an adapter_name).
    if not meta:
        return
    theirs = meta.get("model_type")
    if theirs is not None and theirs != spec.model_type:
        raise AdapterError(
            f"{directory} was trained on base '{meta.get('base_model')}' ({theirs}) "
            f"but the base model is '{spec.name}' ({spec.model_type})"
        )


def _plan(config: RunConfig, spec):
    return plan_device(config.training.device, config.training.precision, spec.model_type)


def _info(ready: ReadyModel, directory: Path | None, shared: bool) -> dict:
    info = {  # shown to any client: names only, never where a file lives on this machine
        "base_model": _public_base_name(ready.model_config.name),
        "formulation": ready.spec.formulation.name,
        "shares_base": shared,
        "trainable_share": None,
        "exact_match": None,
        "f1": None,
    }
    if directory is None:
        return info
    adapter_params = _tensor_elements(directory / "adapter_model.safetensors")
    base_params = _base_parameters(ready.model)
    if adapter_params and base_params:
        info["trainable_share"] = round(adapter_params / (base_params + adapter_params), 6)
    info.update(_recorded_scores(directory.parent / METRICS_FILE))
    return info


def _public_base_name(name: str) -> str:
    """A hub id as it is; a base loaded from a local directory by that directory's name alone."""
    path = Path(name).expanduser()
    return path.name if path.is_absolute() or path.exists() else name


def _tensor_elements(path: Path) -> int:
    total = 0
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            count = 1
            for size in handle.get_slice(key).get_shape():
                count *= size
            total += count
    return total


def _base_parameters(model) -> int:
    # Merged model: its parameters are the base's. Shared PeftModel: leave the LoRA factors out.
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n and "modules_to_save" not in n)


def _recorded_scores(path: Path) -> dict:
    """EM/F1 the training run recorded next to the adapter (runs/NAME/metrics.json), if any."""
    if not path.is_file():
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return {}
    if not isinstance(metrics, dict):
        return {}
    return {k: metrics[k] for k in ("exact_match", "f1") if isinstance(metrics.get(k), (int, float))}
