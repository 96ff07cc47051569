"""The adapters a server answers with, loaded once at start-up and fixed for its lifetime.

Each base model is loaded once. Adapters that fit the same loaded base (same weights, same
vocabulary, same segment-id handling) share it as peft named adapters, unmerged; a base with a
single adapter has it merged, exactly as `loraqa predict` loads it. Questions for adapters of one
mixing group (same base, a formulation that `mixes_adapters`, same tokenizer and model settings)
are answered in one model call with peft's per-row `adapter_names` (`answer_rows`); an adapter in
no group answers its questions alone, after `set_adapter`. Adapters on different bases get their
own base. `--base-only` on a base some adapters already use joins their group (which then stays
unmerged) and answers as peft's "__base__" (inside `disable_adapter()` when alone), so the base is
not loaded a second time.

Nothing here is reachable from a request: the HTTP layer only calls `answer` and `describe`
with the name of an adapter already in the registry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from loraqa.config.schema import RunConfig
from loraqa.data.records import QARecord
from loraqa.errors import FlagError
from loraqa.inference.answer import Answer, answer
from loraqa.inference.ready import AnswerSetup, ReadyModel, answer_setup, load_base_tokenizer, load_for_answering
from loraqa.inference.shared_base import add_named_adapter, answer_mixed, base_view
from loraqa.lora.adapter import read_adapter_meta, read_lora_config
from loraqa.runs.files import METRICS_FILE
from loraqa.serving.settings import AdapterSource

BASE_ONLY_NAME = "base"
FIRST_PEFT_NAME = "default"  # the name PeftModel.from_pretrained gives the first adapter on a base
BASE_PEFT_NAME = "__base__"  # peft's own name for "no adapter" (mixed batches); here: answer with adapters disabled


@dataclass
class ServedAdapter:
    name: str
    ready: ReadyModel  # model possibly shared with other adapters (then peft_name selects this one)
    peft_name: str | None  # None: the model answers as this adapter alone (merged, or a bare base)
    info: dict  # what GET /v1/adapters shows (no paths)
    mix_group: Hashable | None = None  # adapters with an equal group may share a model call (answer_rows)


@dataclass
class SharedBase:
    """A base loaded once, unmerged, with several adapters attached as peft named adapters."""

    first: ReadyModel  # the model the first adapter was loaded with; the others joined it
    token: object  # this base by identity (an id() could be reused once it is freed): the mixing groups'
    members: set[str]  # served names answering from it
    attached: int  # peft names handed out so far ("default", "adapter1", ...): a new one never repeats


class Registry:
    """Adapters by name, the config their answers are made with, the default adapter, and the
    unmerged bases runtime adapters may join (by `_base_key`)."""

    def __init__(
        self, adapters: Sequence[ServedAdapter], config: RunConfig, shared_bases: dict[tuple, SharedBase] | None = None
    ):
        if not adapters:
            raise FlagError("--adapter", "nothing to serve: give --adapter NAME=DIR or --base-only")
        self.adapters = {a.name: a for a in adapters}
        self.default = adapters[0].name
        self.config = config
        self.shared_bases = shared_bases or {}

    def names(self) -> list[str]:
        return list(self.adapters)

    def formulation(self, name: str) -> str:
        return self.adapters[name].ready.spec.formulation.name

    def answer(self, name: str, records: list[QARecord], decoding: str | None) -> list[Answer]:
        """The answers `loraqa predict` prints for these records; runs the model.

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

    def batch_key(self, name: str) -> Hashable:
        """What a question for `name` may share a model call with: its mixing group, else its adapter."""
        group = self.adapters[name].mix_group
        return ("adapter", name) if group is None else ("group", group)

    def answer_rows(self, names: list[str], records: list[QARecord], decoding: str | None) -> list[Answer]:
        """Record i answered by adapter names[i], each as `answer` answers it alone; one set of model
        calls when the names share a `batch_key` (callers batch only such names together)."""
        if len(set(names)) == 1:
            return self.answer(names[0], records, decoding)
        rows = [(self.adapters[n].ready, self.adapters[n].peft_name) for n in names]
        return answer_mixed(rows, self.config, records, decoding)

    def joining_plan(self, source: AdapterSource) -> tuple | None:
        """What `join` needs when `source`'s adapter fits a loaded unmerged base, else None (it then
        loads a base of its own). Reads the adapter's files only; the model is untouched."""
        meta = read_adapter_meta(source.directory)
        setup = answer_setup(self.config, source.directory)
        key = _base_key(setup, meta, source.directory)
        return None if key not in self.shared_bases else (key, setup, meta)

    def join(self, source: AdapterSource, plan: tuple) -> ServedAdapter:
        """Attach `source`'s adapter to the shared base `joining_plan` found and return it, not yet served.

        Attaching changes the model: run it where model calls run (the batcher's worker thread), so it
        never overlaps one. A failed attach (AdapterError) leaves the base as it was."""
        key, setup, meta = plan
        shared = self.shared_bases[key]
        shared.attached += 1
        peft_name = f"adapter{shared.attached}"
        try:
            ready = add_named_adapter(shared.first, setup, meta, peft_name)
        except Exception:
            if peft_name in shared.first.model.peft_config:  # added, then its weights failed to load
                shared.first.model.delete_adapter(peft_name)
            raise
        shared.first.model.eval()
        adapter = ServedAdapter(source.name, ready, peft_name, _info(ready, source.directory, shared=True))
        adapter.mix_group = _mix_group(shared.token, ready)
        return adapter

    def serve(self, adapter: ServedAdapter) -> None:
        """Start answering as `adapter` (loaded alone, or by `join`)."""
        self.adapters[adapter.name] = adapter
        for shared in self.shared_bases.values():
            if adapter.ready.model is shared.first.model:
                shared.members.add(adapter.name)

    def forget(self, name: str) -> ServedAdapter:
        """Stop answering as `name` (questions still queued for it get a 404); `leave` then frees its weights."""
        adapter = self.adapters.pop(name)
        if self.default == name:
            self.default = next(iter(self.adapters))
        return adapter

    def leave(self, adapter: ServedAdapter) -> None:
        """Free a forgotten adapter's weights on its shared base (run where model calls run: it changes
        the model); the base itself is forgotten with its last member, so it can be freed."""
        for key, shared in list(self.shared_bases.items()):
            if adapter.name not in shared.members or adapter.ready.model is not shared.first.model:
                continue
            shared.members.discard(adapter.name)
            if not shared.members:
                del self.shared_bases[key]  # the registry's last reference to this base
                return
            model = shared.first.model
            # The last LoRA adapter stays while the base answers alone (peft needs one to disable).
            if adapter.peft_name not in (None, BASE_PEFT_NAME) and len(model.peft_config) > 1:
                model.delete_adapter(adapter.peft_name)

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
        setup = answer_setup(config, source.directory, base_name=base_name)
        groups.setdefault(_base_key(setup, meta, source.directory), []).append((source, meta, setup))
    base_only_entry = _base_only_entry(config, base_name) if base_only else None
    if base_only_entry is not None and base_only_entry[0] in groups:
        groups[base_only_entry[0]].append(base_only_entry[1])  # shares the adapters' base: not loaded twice
        base_only_entry = None
    served: dict[str, ServedAdapter] = {}
    shared_bases: dict[tuple, SharedBase] = {}
    for key, members in groups.items():
        group, base = _load_group(members, config)
        for adapter in group:
            served[adapter.name] = adapter
        if base is not None:
            shared_bases[key] = SharedBase(group[0].ready, base, {a.name for a in group}, len(group) - 1)
    if base_only_entry is not None:  # no adapter on this base: load it alone
        _, (_, tokenizer, setup) = base_only_entry
        ready = load_for_answering(config, setup=setup, tokenizer=tokenizer)
        served[BASE_ONLY_NAME] = ServedAdapter(BASE_ONLY_NAME, ready, None, _info(ready, None, shared=False))
    return Registry([served[n] for n in names], config, shared_bases)


def _base_only_entry(config: RunConfig, base_name: str | None) -> tuple[tuple, tuple]:
    """The base-only member (source None) and the key it shares a base under (as `_base_key` builds it)."""
    setup = answer_setup(config, None, base_name=base_name)
    tokenizer = load_base_tokenizer(setup)
    spec, model_config = setup.spec, setup.model_config
    # The rows load_model gives the base alone: its own, grown to the tokenizer when tokens were added.
    rows = max(int(spec.hf_config.vocab_size), len(tokenizer))
    key = (
        spec.path,
        model_config.revision,
        spec.formulation.auto_model_class().__name__,
        model_config.use_token_type_ids,
        rows,
    )
    return key, (None, tokenizer, setup)


def _base_key(setup: AnswerSetup, meta: dict, directory: Path) -> tuple:
    """Adapters with equal keys can share one loaded base: same weights, rows and segment handling."""
    spec, model_config = setup.spec, setup.model_config
    task_type = read_lora_config(directory).task_type  # the checked adapter_config.json (adapter_files.py)
    return (
        spec.path,
        model_config.revision,
        spec.formulation.auto_model_class().__name__,
        model_config.use_token_type_ids or task_type == "QUESTION_ANS",  # QA-task adapters rewrite segment weights
        int(meta["embedding_rows"]) if "embedding_rows" in meta else None,
    )


def _load_group(members: list[tuple], config: RunConfig) -> tuple[list[ServedAdapter], object | None]:
    """Members are (source, meta, answer setup) of adapters on one base, the first an adapter;
    a base-only member is (None, base tokenizer, answer setup). Also the base's identity token
    when it is shared (unmerged), else None."""
    first_source, _, first_setup = members[0]
    if len(members) == 1:  # merged, as `loraqa predict` loads it
        ready = load_for_answering(config, setup=first_setup)
        return [ServedAdapter(first_source.name, ready, None, _info(ready, first_source.directory, shared=False))], None
    # Several adapters on one base: the first attaches through load_adapter (its checks and resizing),
    # the others join it as named adapters, unmerged, so one set of base weights serves them all.
    first = load_for_answering(config, setup=first_setup, merge=False)
    served = [ServedAdapter(first_source.name, first, FIRST_PEFT_NAME, _info(first, first_source.directory, True))]
    for index, (source, meta, setup) in enumerate(members[1:], start=1):
        if source is None:  # --base-only on this base: the same model, adapters disabled while it answers
            ready = base_view(first, setup, tokenizer=meta)  # a base-only member's second item: its tokenizer
            served.append(ServedAdapter(BASE_ONLY_NAME, ready, BASE_PEFT_NAME, _info(ready, None, shared=True)))
            continue
        peft_name = f"adapter{index}"
        ready = add_named_adapter(first, setup, meta, peft_name)
        served.append(ServedAdapter(source.name, ready, peft_name, _info(ready, source.directory, True)))
    first.model.eval()
    base = object()  # this loaded base, by identity (an id() could be reused once it is freed)
    for adapter in served:
        adapter.mix_group = _mix_group(base, adapter.ready)
    return served, base


def _mix_group(base: object, ready: ReadyModel) -> tuple | None:
    """Adapters on one base whose questions may share a model call: the formulation passes per-row
    adapter names on, and everything else that shapes the call (tokenizer, model settings, SQuAD v2) is equal."""
    formulation = ready.spec.formulation
    if not formulation.mixes_adapters(ready.version_2):
        return None
    return (base, repr(formulation.config), _tokenizer_fingerprint(ready.tokenizer), ready.version_2)


def _tokenizer_fingerprint(tokenizer) -> tuple:
    vocab = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
    settings = ("padding_side", "truncation_side", "pad_token_id", "eos_token_id", "bos_token_id", "chat_template")
    return (type(tokenizer).__name__, len(tokenizer), vocab, *(repr(getattr(tokenizer, k, None)) for k in settings))


def _info(ready: ReadyModel, directory: Path | None, shared: bool) -> dict:
    info = {  # shown to any client: names only, never where a file lives on this machine
        "base_model": _public_base_name(ready.model_config.name),
        "formulation": ready.spec.formulation.name,
        "shares_base": shared,
        "trainable_percent": None,
        "exact_match": None,
        "f1": None,
    }
    if directory is None:
        return info
    adapter_params = _tensor_elements(directory / "adapter_model.safetensors")
    base_params = _base_parameters(ready.model)
    if adapter_params and base_params:
        info["trainable_percent"] = round(100 * adapter_params / (base_params + adapter_params), 4)
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
