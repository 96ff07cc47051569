"""Attach, check, save and load LoRA adapters (peft), with the seeds' pitfalls turned into errors.

- A trainable share above `max_trainable_share` stops the run before training and names the
  modules responsible (a `modules_to_save: [embed_tokens, lm_head]` made 46% of T5 trainable).
- A target module name that matches no module of the model is refused, listing its linear layers
  (checked on the model before any evaluation, so a typo costs seconds, not a baseline).
- An adapter is saved as peft writes it (adapter_config.json + adapter_model.safetensors) with the
  tokenizer and a `loraqa.json` describing its base, into a temporary directory renamed at the end.
- Reading an adapter directory is data only: every file is checked against a schema first
  (adapter_files.py), so an adapter can never switch on remote code or point at another base.
- Loading resizes the base embeddings to the adapter's vocabulary BEFORE attaching the adapter,
  and refuses an adapter made for another base with a message naming both, or whose weights file
  holds more than its config accounts for, or broken numbers (adapter_weights.py).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from loraqa import families
from loraqa.atomic import atomic_directory, write_json_atomic
from loraqa.config.schema import LoraSettings, ModelConfig
from loraqa.config.validate import mutates_base
from loraqa.errors import AdapterError, ConfigError
from loraqa.formulations.base import Formulation, model_device
from loraqa.lora.adapter_files import ADAPTER_FILES, ADAPTER_MODEL_KEYS, META_FILE, read_adapter_meta, read_lora_config
from loraqa.lora.adapter_readme import README_FILE, adapter_readme
from loraqa.lora.adapter_weights import check_adapter_weights
from loraqa.lora.presets import PRESET_NAMES, resolve_target_modules
from loraqa.models.cheap_dropout import use_cheap_masks
from loraqa.models.loading import ignore_segment_ids
from loraqa.models.offline import describe_base, plain_base_id, portable_base_name
from loraqa.version import __version__

# peft reads `model.is_gradient_checkpointing` when it wraps a model, a name transformers 5 deprecated:
# a FutureWarning on every `loraqa.load()` that no user can act on (this one only; others still show).
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

__all__ = ["ADAPTER_FILES", "META_FILE", "adapter_meta", "load_adapter", "read_adapter_meta", "save_adapter"]


def attach_lora(
    model, settings: LoraSettings, formulation, model_type: str, new_token_ids: list[int] | None = None
) -> PeftModel:
    """Wrap `model` with fresh LoRA layers and check the trainable share.

    `new_token_ids` (tokens added to the vocabulary) get trainable embedding rows that are saved
    with the adapter; the rest of the embedding matrix stays frozen (no 46%-trainable trap).
    """
    target_modules = resolve_target_modules(settings.target_modules, model_type)
    if not _is_preset(settings.target_modules):
        check_target_modules(model, target_modules)
    modules_to_save = settings.modules_to_save
    if modules_to_save is None:
        modules_to_save = list(formulation.default_modules_to_save) or None
    inert_segments = inert_segment_modules(model)
    if inert_segments:
        modules_to_save = list(dict.fromkeys([*(modules_to_save or []), *inert_segments]))
    lora_config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=target_modules,
        bias=settings.bias,
        modules_to_save=modules_to_save,
        layers_to_transform=adapted_layers(settings.layers_to_transform, model.config),
        task_type=formulation.peft_task_type,
        fan_in_fan_out=families.has_conv1d_weights(model_type),  # GPT-2's Conv1D stores weights transposed
        trainable_token_indices=list(new_token_ids) if new_token_ids else None,
        **variant_kwargs(settings),
    )
    if settings.quantize_base != "none":
        from peft import prepare_model_for_kbit_training

        # fp32 norms and input grads for the quantized base; checkpointing stays training.gradient_checkpointing's call
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    try:
        peft_model = get_peft_model(model, lora_config)
    except ValueError as exc:
        raise ConfigError("lora.target_modules", str(exc).splitlines()[0]) from None
    _freeze_saved_copies(peft_model, inert_segments)
    keep_trainable_fp32(peft_model)
    if mutates_base(settings):
        keep_initial_adapter(peft_model)
    check_trainable_share(peft_model, settings)
    if model_device(model).type == "cpu":
        use_cheap_masks(peft_model)  # torch's CPU dropout masks cost 10-19% of a step (models/cheap_dropout.py)
    return peft_model


def keep_trainable_fp32(peft_model) -> None:
    """Trainable weights in fp32 whatever the base's dtype: they are the optimizer's master weights
    (a bf16 update rounds small steps away; fp16's loss scaler refuses fp16 gradients). peft upcasts
    LoRA matrices itself; trained copies of a half-precision base's modules (`modules_to_save`: the QA
    head) need it here. Frozen copies (inert segment embeddings) keep the base's dtype, which the
    base's own arithmetic expects; loading casts them to whatever base they meet."""
    for parameter in peft_model.parameters():
        if parameter.requires_grad and parameter.dtype in (torch.bfloat16, torch.float16):
            parameter.data = parameter.data.float()


def is_plain_lora(settings: LoraSettings, adds_tokens: bool) -> bool:
    """Whether training changes LoRA matrices and saved modules only: no added token rows, no DoRA
    magnitudes, no initialisation that moves base weights, no trained biases, a full-precision base.
    Only then may the frozen base be held in half precision (`device.frozen_base_dtype`)."""
    return (
        not adds_tokens
        and not settings.use_dora
        and not mutates_base(settings)
        and settings.bias == "none"
        and settings.quantize_base == "none"
    )


def inert_segment_modules(model) -> list[str]:
    """Leaf names of the segment (token-type) embeddings that loading made inert, to save with the adapter.

    `models.loading.ignore_segment_ids` copies segment 0's row over the others on the base, so a
    model trained that way answers the same whatever segment ids it is given. Plain transformers +
    peft load the base untouched, and a tokenizer's full output (BERT's `token_type_ids`) then meets
    the base's real segment-1 row: different answers. Saving the inert module with the adapter (a
    `modules_to_save` copy, frozen, so training is unchanged) makes the adapter self-contained.
    """
    names: dict[str, None] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None) if name.endswith("token_type_embeddings") else None
        # Inert: every row equals segment 0's (a trained embedding never does by chance).
        if weight is not None and weight.shape[0] > 1 and torch.equal(weight[1:], weight[:1].expand_as(weight[1:])):
            names.setdefault(name.rsplit(".", 1)[-1], None)
    return list(names)


def _freeze_saved_copies(peft_model, names: list[str]) -> None:
    """peft makes every modules_to_save copy trainable; these copies are saved, never trained."""
    for name, param in peft_model.named_parameters():
        if ".modules_to_save." in name and any(f"{n}.modules_to_save." in name for n in names):
            param.requires_grad_(False)


def variant_kwargs(settings: LoraSettings) -> dict:
    """LoraConfig's arguments for the variant keys (validated in config/validate.py): peft implements them."""
    init = {"default": True}.get(
        settings.init, settings.init
    )  # gaussian, pissa, pissa_niter_N, olora as peft spells them
    return {"use_dora": settings.use_dora, "use_rslora": settings.use_rslora, "init_lora_weights": init}


# The untrained PiSSA/OLoRA adapter, kept (on disk, as peft's conversion reads it) for `save_adapter`.
_INITIAL_ADAPTER = "_loraqa_initial_adapter"


def keep_initial_adapter(peft_model) -> None:
    """Save the freshly initialised adapter of a base-mutating init (PiSSA, OLoRA) to a temporary
    directory that lives as long as the model: peft needs it to turn the trained adapter into a plain
    LoRA one for the untouched base (`path_initial_model_for_weight_conversion`). A resumed run
    rebuilds the same one: both inits are deterministic given the base weights and the seed."""
    holder = tempfile.TemporaryDirectory(prefix="loraqa-initial-adapter-")
    initial = Path(holder.name) / "initial"
    peft_model.save_pretrained(str(initial), safe_serialization=True, save_embedding_layers=False)  # LoRA factors only
    setattr(peft_model, _INITIAL_ADAPTER, (holder, str(initial)))


def _is_preset(spec: str | list[str]) -> bool:
    # A preset lists every family member's spelling (T5: wi or wi_0/wi_1); only some exist in one model.
    return isinstance(spec, str) and spec.strip() in PRESET_NAMES


def check_target_modules(model, names: str | list[str]) -> None:
    """Refuse target module names that match no module of `model` (as peft matches them: the full
    name or its dotted suffix), listing the names LoRA can go on. peft itself only complains when
    none matches, so a misspelt name next to a right one would silently adapt less."""
    if isinstance(names, str):
        return  # peft's "all-linear"
    module_names = [name for name, _ in model.named_modules() if name]
    missing = [t for t in names if not any(m == t or m.endswith(f".{t}") for m in module_names)]
    if missing:
        raise ConfigError(
            "lora.target_modules",
            f"no module named {', '.join(repr(m) for m in missing)} in this model; its linear layers are "
            f"{', '.join(adaptable_module_names(model))}",
        )


def adaptable_module_names(model) -> list[str]:
    """Leaf names of the layers LoRA can adapt (linear, GPT-2's Conv1D), in model order, once each."""
    from transformers.pytorch_utils import Conv1D

    seen: dict[str, None] = {}
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, Conv1D)):
            seen.setdefault(name.rsplit(".", 1)[-1], None)
    return list(seen)


def adapted_layers(layers: list[int] | str | None, model_config) -> list[int] | None:
    """The layer indices LoRA goes on; "upper_half" becomes the top half of the model's layers."""
    if layers is None:
        return None
    count = model_config.get_text_config().num_hidden_layers  # every architecture maps this name
    if layers == "upper_half":
        return list(range(count // 2, count))
    missing = [i for i in layers if i >= count]
    if missing:
        raise ConfigError(
            "lora.layers_to_transform", f"layer {missing[0]} does not exist: the model has layers 0-{count - 1}"
        )
    return layers


def parameter_counts(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def check_trainable_share(model, settings: LoraSettings) -> None:
    trainable, total = parameter_counts(model)
    share = trainable / max(total, 1)
    if share <= settings.max_trainable_share or settings.allow_large_trainable_share:
        return
    groups: dict[str, int] = defaultdict(int)
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups[_trainable_group(name)] += param.numel()
    parts = ", ".join(
        f"{group} {count / 1e6:.2f}M ({100 * count / total:.1f}%)"
        for group, count in sorted(groups.items(), key=lambda kv: -kv[1])[:4]
    )
    largest = max(groups, key=groups.get)
    if largest == "LoRA layers":  # the rank or the adapted layers, not a saved module, make the share
        advice = "lower lora.r, adapt fewer layers (lora.target_modules, lora.layers_to_transform)"
    else:
        advice = "drop the large entries from lora.modules_to_save"
    raise ConfigError(
        "lora.max_trainable_share",
        f"{100 * share:.1f}% of {total:,} parameters would train (limit {100 * settings.max_trainable_share:.0f}%): "
        f"{parts}; {advice} or set lora.allow_large_trainable_share=true",
    )


def _trainable_group(name: str) -> str:
    if "lora_" in name:
        return "LoRA layers"
    if "modules_to_save" in name:
        module = name.split(".modules_to_save")[0].rsplit(".", 1)[-1]
        return f"modules_to_save '{module}'"
    return f"'{name}'"


def adapter_meta(
    model_config: ModelConfig,
    formulation: Formulation,
    hf_config,
    tokenizer,
    model,
    *,
    version_2: bool = False,
    config=None,
    quantize_base: str = "none",
) -> dict:
    """What loading needs to check the base and rebuild the vocabulary (saved as loraqa.json).

    `model_config` keeps only what describes how the adapter was trained (`ADAPTER_MODEL_KEYS`):
    trust_remote_code and revision are the loading user's decisions, never an adapter's. `base` says
    where the base comes from in a form that survives moving the adapter (`models.offline.describe_base`):
    a local directory is recorded as an absolute path. `config` (the run's RunConfig), when given, adds
    the key hyperparameters under `training` for the README.
    """
    base = describe_base(model_config.name)
    saved = dataclasses.asdict(model_config)
    saved["prompt_template"] = formulation.prompt_template  # resolved: a later default never reprompts it
    saved["name"] = portable_base_name(base)
    meta = {
        "loraqa_version": __version__,
        "base_model": model_config.name,
        "model_type": hf_config.model_type,
        "hidden_size": _hidden_size(hf_config),
        "vocab_size": len(tokenizer),
        "embedding_rows": model.get_input_embeddings().weight.shape[0],
        "base_vocab_size": hf_config.vocab_size,  # before tokens were added
        "formulation": formulation.name,
        "version_2": bool(version_2),  # trained with unanswerable questions: predict may answer "no answer"
        "quantize_base": quantize_base,  # trained on a 4/8-bit base: `loraqa merge` still merges into full precision
        "model_config": {key: saved[key] for key in ADAPTER_MODEL_KEYS},
        "base": base,
    }
    if config is not None:
        meta["training"] = training_summary(config)
    return meta


def training_summary(config) -> dict:
    """The hyperparameters a reader of the adapter's README wants (all JSON scalars or string lists)."""
    lora, training, data = config.lora, config.training, config.data
    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    return {
        "train_data": data.train,
        "train_samples": data.train_samples,
        "r": lora.r,
        "lora_alpha": float(lora.lora_alpha),
        "lora_dropout": float(lora.lora_dropout),
        "target_modules": targets,
        "learning_rate": float(training.learning_rate),
        "batch_size": training.per_device_train_batch_size,
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "num_train_epochs": float(training.num_train_epochs),
        "max_steps": training.max_steps,
        "seed": training.seed,
    }


def save_adapter(peft_model, tokenizer, directory: str | Path, meta: dict) -> None:
    """Write adapter + tokenizer + loraqa.json + README.md; the directory appears only when complete.

    adapter_config.json names the base plain peft should load (`models.offline.plain_base_id`: the
    hub id, or a local directory's absolute path), not the path this process happened to load from.
    """
    config = peft_model.peft_config[peft_model.active_adapter]
    written = {"base_model_name_or_path": plain_base_id(meta["base"])} if "base" in meta else {}
    # peft writes a set (target_modules) in its iteration order, which string hashing changes from one
    # process to the next: sorted, an adapter is the same bytes whichever process saved it (a resumed run).
    written.update({key: sorted(value, key=str) for key, value in vars(config).items() if isinstance(value, set)})
    kept = {key: getattr(config, key) for key in written}
    for key, value in written.items():
        setattr(config, key, value)
    try:
        with atomic_directory(directory) as tmp:
            initial = getattr(peft_model, _INITIAL_ADAPTER, None)
            embeddings = saves_embedding_layers(meta)
            if initial is None:
                peft_model.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=embeddings)
            else:
                # PiSSA/OLoRA trained on a changed base: peft rewrites the adapter as plain LoRA of rank 2r
                # (dW = AB - A0B0), which loads on the original base with the same answers.
                peft_model.save_pretrained(
                    str(tmp),
                    safe_serialization=True,
                    path_initial_model_for_weight_conversion=initial[1],
                    save_embedding_layers=embeddings,
                )
                _restore_non_lora_weights(peft_model, tmp, embeddings)
            save_tokenizer(tokenizer, tmp)
            write_json_atomic(tmp / META_FILE, meta)
            (tmp / README_FILE).write_text(adapter_readme(meta), encoding="utf-8")
    finally:
        for key, value in kept.items():
            setattr(config, key, value)


def saves_embedding_layers(meta: dict) -> bool:
    """Whether the adapter carries its whole embedding layers: when its vocabulary grew (the new rows
    exist nowhere else). Said to peft rather than left to its "auto", which asks the model hub for the
    base's config.json to find out, and without a network silently assumes the vocabulary did not grow."""
    rows, base_rows = meta.get("embedding_rows"), meta.get("base_vocab_size")
    return rows is not None and base_rows is not None and rows != base_rows


def _restore_non_lora_weights(peft_model, directory: Path, embeddings: bool) -> None:
    """Put back what peft 0.21's PiSSA/OLoRA conversion leaves out of the saved weights: it keeps
    only lora_A/lora_B, dropping modules_to_save (the extractive QA head), trainable token rows and
    trained biases, none of which the initialisation changed."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    path = Path(directory) / "adapter_model.safetensors"
    saved = load_file(str(path))
    missing = {
        k: v.detach().cpu().clone().contiguous()
        for k, v in get_peft_model_state_dict(peft_model, save_embedding_layers=embeddings).items()
        if k not in saved
    }
    if missing:
        save_file({**saved, **missing}, str(path), metadata={"format": "pt"})


def check_same_architecture(directory: str | Path, meta: dict, base_name: str, hf_config) -> None:
    """AdapterError naming both when `hf_config` is not the architecture (type, width) the adapter was trained on."""
    if not meta:
        return
    theirs = (meta.get("model_type"), meta.get("hidden_size"))
    ours = (hf_config.model_type, _hidden_size(hf_config))
    if theirs != ours:
        raise AdapterError(
            f"{directory} was trained on base '{meta.get('base_model')}' ({theirs[0]}, hidden {theirs[1]}) "
            f"but the base model is '{base_name}' ({ours[0]}, hidden {ours[1]})"
        )


def load_adapter(base_model, tokenizer, directory: str | Path, base_name: str, hf_config, meta: dict) -> PeftModel:
    """Attach a saved adapter to `base_model` (resizing embeddings first when its vocabulary grew)."""
    directory = Path(directory)
    check_same_architecture(directory, meta, base_name, hf_config)
    base_vocab = meta.get("base_vocab_size")
    if base_vocab is not None and base_vocab != hf_config.vocab_size:
        raise AdapterError(
            f"{directory} was trained on base '{meta.get('base_model')}' with a vocabulary of {base_vocab} "
            f"but the base model '{base_name}' has {hf_config.vocab_size}"
        )
    rows = base_model.get_input_embeddings().weight.shape[0]
    wanted = int(meta.get("embedding_rows", len(tokenizer)))
    # The config peft uses is the one checked here (adapter_files.py): peft does not read the file again.
    lora_config = read_lora_config(directory, base_path=getattr(base_model.config, "name_or_path", None) or base_name)
    check_adapter_weights(directory, lora_config, type(base_model), hf_config, wanted)
    if wanted != rows:
        # Resize before attaching: the adapter's saved embedding layers have the grown shape.
        base_model.resize_token_embeddings(wanted)
    try:
        model = PeftModel.from_pretrained(base_model, str(directory), is_trainable=False, config=lora_config)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdapterError(f"{directory} does not fit base '{base_name}': {first[:300]}") from None
    if model.peft_config[model.active_adapter].task_type == "QUESTION_ANS":
        _answer_without_token_types(model, directory)
    return model


def _answer_without_token_types(model: PeftModel, directory: Path) -> None:
    """Make an adapter trained as peft's QUESTION_ANS task answer as it was trained.

    That task's forward (peft 0.21) never passes token_type_ids to the model, so such an adapter
    (made by plain peft, or by an earlier loraqa) learned with every token in segment 0.
    """
    if ignore_segment_ids(model.base_model.model):
        print(
            f"loraqa: {directory} was trained as peft task QUESTION_ANS, which ignores token_type_ids; "
            "answering with segment 0 everywhere, as in its training",
            file=sys.stderr,
        )


def _hidden_size(hf_config) -> int | None:
    for attr in ("hidden_size", "d_model", "n_embd", "dim"):
        value = getattr(hf_config, attr, None)
        if isinstance(value, int):
            return value
    return None


def load_adapter_weights(peft_model, directory: str | Path) -> None:
    """Put the LoRA weights saved in `directory` (an adapter or a Trainer checkpoint of this run)
    into `peft_model`, which has the same LoRA layout. Tensors only: safetensors runs no code."""
    from peft import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory) / "adapter_model.safetensors"
    try:
        weights = load_file(str(path), device=str(model_device(peft_model)))
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterError(f"{path}: unreadable ({str(exc).splitlines()[0]})") from None
    result = set_peft_model_state_dict(peft_model, weights)
    if result.unexpected_keys:
        raise AdapterError(f"{path}: does not fit this run's LoRA layers ({result.unexpected_keys[0]} unexpected)")


def save_tokenizer(tokenizer, directory: str | Path) -> None:
    """Save `tokenizer` as loading it would give it back, whatever it was last called with.

    A fast tokenizer keeps the truncation and padding of its last call in its backend, and
    `save_pretrained` writes them into tokenizer.json; so the same adapter saved after a
    truncating call (training features) or a plain one (an evaluation's offsets) differed in its
    bytes, and a resumed run's adapter from the uninterrupted one's. Every call sets them again,
    so clearing them before the save changes nothing that runs."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    # How it was loaded (offline or not: whether the hub answered that day) is not the tokenizer's, and
    # transformers would write it into tokenizer_config.json, so the same run's bytes varied with the network.
    init_kwargs = getattr(tokenizer, "init_kwargs", None)
    if isinstance(init_kwargs, dict):
        init_kwargs.pop("local_files_only", None)
    tokenizer.save_pretrained(str(directory))
