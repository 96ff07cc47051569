"""Several adapters answering from one loaded base (the server): peft named adapters on one model.

The first adapter on a base is loaded unmerged (`load_for_answering(..., merge=False)`: its checks
and resizing); each other adapter on that base joins it with `add_named_adapter`, and `base_view`
is the same model answering with its adapters disabled. Whoever answers selects one with peft's
`set_adapter` (or `disable_adapter()`) before each batch, or answers questions for several of
them in one batch with `answer_mixed` (peft's per-row `adapter_names`).
"""

from __future__ import annotations

from pathlib import Path

from loraqa.config.schema import RunConfig
from loraqa.data.records import QARecord
from loraqa.errors import AdapterError
from loraqa.inference.answer import Answer, answers_from
from loraqa.inference.ready import AnswerSetup, ReadyModel
from loraqa.lora.adapter import read_lora_config
from loraqa.lora.adapter_weights import check_adapter_weights
from loraqa.models.loading import load_adapter_tokenizer


def add_named_adapter(shared: ReadyModel, setup: AnswerSetup, meta: dict, peft_name: str) -> ReadyModel:
    """Attach `setup.adapter` (its checked loraqa.json is `meta`) to `shared.model`, a PeftModel, as
    the peft adapter `peft_name`; the ReadyModel answering as it once `set_adapter(peft_name)`.
    An adapter that does not fit the base is an `AdapterError`."""
    assert setup.adapter is not None, "add_named_adapter: a setup with an adapter"
    directory = Path(setup.adapter)
    _check_same_base(directory, meta, setup.spec)
    peft_model = shared.model
    try:
        # Registered from the checked config first, so peft's load_adapter never reads adapter_config.json itself.
        lora_config = read_lora_config(directory, base_path=setup.spec.path)
        lora_config.inference_mode = True
        rows = int(meta.get("embedding_rows") or peft_model.get_input_embeddings().weight.shape[0])
        base_class = type(peft_model.get_base_model())
        check_adapter_weights(directory, lora_config, base_class, setup.spec.hf_config, rows)
        peft_model.add_adapter(peft_name, lora_config)
        peft_model.load_adapter(str(directory), adapter_name=peft_name, is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdapterError(f"{directory} does not fit base '{setup.model_config.name}': {first_line[:300]}") from None
    tokenizer = load_adapter_tokenizer(setup.spec, directory)
    return ReadyModel(peft_model, tokenizer, setup.spec, setup.model_config, str(directory))


def base_view(shared: ReadyModel, setup: AnswerSetup, tokenizer) -> ReadyModel:
    """`shared.model` as the base alone (`setup` without an adapter, `tokenizer` its base's): it
    answers inside peft's `disable_adapter()`, with the base's own weights and heads."""
    return ReadyModel(shared.model, tokenizer, setup.spec, setup.model_config, None)


def answer_mixed(
    rows: list[tuple[ReadyModel, str]], config: RunConfig, records: list[QARecord], decoding: str | None = None
) -> list[Answer]:
    """Per record, the `Answer` its adapter gives alone (`answer.answer`), from one set of model calls.

    `rows[i]` is record i's (ReadyModel, peft adapter name): adapters attached to one unmerged model
    (`add_named_adapter`; "__base__" for `base_view`), whose formulation `mixes_adapters` and whose
    tokenizer and model settings are the same (the registry groups only such adapters). The formulation
    passes each row's name to peft; what differs per adapter after the model, its SQuAD v2 threshold and
    its calibration, is applied per record.
    """
    from loraqa.inference.evaluate import answering_threshold, predict_settings
    from loraqa.lora import grouped_lora

    first = rows[0][0]
    settings = predict_settings(config, version_2=first.version_2, decoding=decoding, adapter=first.adapter)
    settings.with_loss = False
    settings.adapter_names = [name for _, name in rows]
    grouped_lora.install(first.model)  # adapters as slices, few-token steps in two matmuls: not peft's loop
    predictions = first.spec.formulation.predict(first.model, first.tokenizer, records, settings).predictions
    answers: list[Answer | None] = [None] * len(records)
    for ready in {id(ready): ready for ready, _ in rows}.values():
        mine = [i for i, (other, _) in enumerate(rows) if other is ready]
        threshold = answering_threshold(config, ready.adapter)
        own = [predictions[i].at_threshold(threshold) for i in mine]
        for i, found in zip(mine, answers_from(ready, [records[i] for i in mine], own), strict=True):
            answers[i] = found
    assert all(a is not None for a in answers), "every row belongs to one of the batch's adapters"
    return [a for a in answers if a is not None]


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
