"""Answer with an ONNX export (`loraqa export --format onnx`) through ONNX Runtime.

The export directory holds the graphs, the model's config.json, its tokenizer and `EXPORT_META_FILE`
(the model section it was trained with). Loading it gives the parts of a `ReadyModel` whose `model` stands in for
the torch model: the same formulation code windows the questions, batches them and reads the answers
(an extractive model's span search, `generate()`'s greedy or beam decoding with its stopping rules),
so only the forward pass changes. Generative graphs have no KV cache (see `loraqa.export.onnx`): each
decoding step runs over the whole sequence so far, and only the last position's logits come back.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from transformers import GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutput, QuestionAnsweringModelOutput, Seq2SeqLMOutput

from loraqa.config.schema import ModelConfig
from loraqa.errors import LoraqaError
from loraqa.input_files import MAX_JSON_SIDECAR_BYTES, input_file_problem

EXPORT_META_FILE = "loraqa_export.json"
# The graphs each kind of export writes (one home: the exporter names its files from here).
GRAPHS = {"span": ("model.onnx",), "decoder": ("model.onnx",), "encoder-decoder": ("encoder.onnx", "decoder.onnx")}


def is_onnx_export(directory: str | Path) -> bool:
    """Whether `directory` is a `loraqa export --format onnx` output (its metadata file is there)."""
    return (Path(directory) / EXPORT_META_FILE).is_file()


def read_export_meta(directory: str | Path) -> dict:
    path = Path(directory) / EXPORT_META_FILE
    problem = input_file_problem(path, MAX_JSON_SIDECAR_BYTES)
    if problem:
        raise LoraqaError(f"{path}: {problem}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise LoraqaError(f"{path} is not valid JSON ({exc}); export the model again") from None
    if not isinstance(meta, dict) or meta.get("kind") not in GRAPHS or not isinstance(meta.get("model_config"), dict):
        raise LoraqaError(f"{path} is not a loraqa ONNX export's metadata; export the model again")
    return meta


def load_onnx_parts(directory: str | Path) -> tuple:
    """(model, tokenizer, spec, model section, directory, version_2) of the ONNX export in `directory`,
    the model answering with ONNX Runtime: what `inference.ready` makes its `ReadyModel` of."""
    from loraqa.models.loading import inspect_base, load_tokenizer

    meta = read_export_meta(directory)
    config = dataclasses.replace(ModelConfig(**meta["model_config"]), name=str(directory))
    spec = inspect_base(config)
    tokenizer = load_tokenizer(spec, dataclasses.replace(config, add_tokens=[]))  # the export's own vocabulary
    sessions = load_sessions(directory, meta["kind"])
    model = {"span": OnnxSpanModel, "decoder": OnnxCausalLM, "encoder-decoder": OnnxSeq2SeqLM}[meta["kind"]]
    model = model(*sessions, hf_config=spec.hf_config, directory=Path(directory))
    # The export carries the adapter's calibration (calibration.json), read as an adapter's is.
    return model.eval(), tokenizer, spec, config, str(directory), bool(meta.get("version_2"))


def load_sessions(directory: str | Path, kind: str) -> list:
    """One ONNX Runtime session per graph of a `kind` export in `directory`, in `GRAPHS[kind]` order."""
    return [_session(Path(directory) / name) for name in GRAPHS[kind]]


def require_onnx_runtime(*modules: str) -> None:
    """One line naming the extra to install when ONNX's packages are missing (`onnxruntime`, `onnx`)."""
    import importlib.util

    missing = [m for m in ("onnxruntime", *modules) if importlib.util.find_spec(m) is None]
    if missing:
        raise LoraqaError(f"ONNX models need {' and '.join(missing)}: pip install 'loraqa[export]'")


def _session(path: Path):
    require_onnx_runtime()
    import onnxruntime

    if not path.is_file():
        raise LoraqaError(f"{path} is missing: the ONNX export is incomplete; export the model again")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are noise to a user
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(session, **inputs: torch.Tensor) -> list[np.ndarray]:
    """Run `session` with the inputs its graph declares (an exporter drops inputs a model ignores)."""
    wanted = {i.name for i in session.get_inputs()}
    feed = {name: value.detach().cpu().numpy() for name, value in inputs.items() if name in wanted}
    return session.run(None, feed)


class _Anchor(torch.nn.Module):
    """One empty parameter, so `next(model.parameters())` says the model answers on the CPU."""

    def __init__(self):
        super().__init__()
        self.onnx_anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)


class OnnxSpanModel(_Anchor):
    """An extractive model's forward: start and end logits over each window's tokens."""

    def __init__(self, session, hf_config, directory: Path):
        super().__init__()
        self.session, self.config = session, hf_config

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_) -> QuestionAnsweringModelOutput:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        starts, ends = run_session(
            self.session, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return QuestionAnsweringModelOutput(start_logits=torch.from_numpy(starts), end_logits=torch.from_numpy(ends))


def _generation_config(hf_config, directory: Path) -> GenerationConfig:
    """The exported model's generation settings (generation_config.json, as the torch model reads them), no cache."""
    if (directory / "generation_config.json").is_file():
        config = GenerationConfig.from_pretrained(str(directory))
    else:
        config = GenerationConfig.from_model_config(hf_config)
    config.use_cache = False
    return config


class OnnxCausalLM(PreTrainedModel, GenerationMixin):
    """A decoder-only model for `generate()`: each step runs the graph over the whole sequence.

    Positions come from the attention mask (left padding), as transformers computes them for the torch model.
    """

    main_input_name = "input_ids"
    teacher_forcing = False  # last-position logits only: evaluation scores answers, not the gold answer's loss

    def __init__(self, session, hf_config, directory: Path):
        super().__init__(hf_config)
        self.session = session
        self.onnx_anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)
        self.generation_config = _generation_config(hf_config, directory)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **_):
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def forward(self, input_ids, attention_mask=None, **_) -> CausalLMOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        (logits,) = run_session(
            self.session, input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        )
        return CausalLMOutput(logits=torch.from_numpy(logits))


class _OnnxEncoder(_Anchor):
    main_input_name = "input_ids"

    def __init__(self, session):
        super().__init__()
        self.session = session

    def forward(self, input_ids, attention_mask=None, **_) -> BaseModelOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        (hidden,) = run_session(self.session, input_ids=input_ids, attention_mask=attention_mask)
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))


class OnnxSeq2SeqLM(PreTrainedModel, GenerationMixin):
    """An encoder-decoder model for `generate()`: the encoder graph once, the decoder graph per step."""

    main_input_name = "input_ids"
    teacher_forcing = False  # last-position logits only: evaluation scores answers, not the gold answer's loss

    def __init__(self, encoder_session, decoder_session, hf_config, directory: Path):
        super().__init__(hf_config)
        self.encoder = _OnnxEncoder(encoder_session)
        self.decoder_session = decoder_session
        self.generation_config = _generation_config(hf_config, directory)

    def get_encoder(self):
        return self.encoder

    def prepare_inputs_for_generation(self, input_ids, encoder_outputs=None, attention_mask=None, **_):
        return {"decoder_input_ids": input_ids, "encoder_outputs": encoder_outputs, "attention_mask": attention_mask}

    def forward(self, decoder_input_ids, encoder_outputs, attention_mask=None, **_) -> Seq2SeqLMOutput:
        hidden = encoder_outputs[0] if isinstance(encoder_outputs, tuple) else encoder_outputs.last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long)
        (logits,) = run_session(
            self.decoder_session,
            decoder_input_ids=decoder_input_ids,
            encoder_hidden_states=hidden,
            attention_mask=attention_mask,
        )
        return Seq2SeqLMOutput(logits=torch.from_numpy(logits))
