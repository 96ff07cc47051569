"""Write a merged model as ONNX graphs that `inference.onnx_model` (or plain onnxruntime) runs.

Why torch.onnx.export's TorchScript exporter (`dynamo=False`) and not Optimum: optimum-onnx needs
transformers < 4.58 and loraqa runs transformers 5; the dynamo exporter, tried on the same models, is
slower to export and more fragile around transformers' masking code, while tracing the eager attention
path gives graphs that match the torch model to ~1e-6 with dynamic batch and sequence axes. Tracing
needs an example whose attention mask holds padding, so the masking code is traced with padding in it.

Generative graphs have no KV cache: greedy or beam decoding then reruns the graph over the whole
sequence each step (fine for answers of a few tokens, quadratic in their length), and the graphs
return only the last position's logits, which is all decoding reads.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from loraqa.inference.onnx_model import GRAPHS

OPSET = 17  # onnxruntime >= 1.14 runs it; LayerNormalization is one op from opset 17
BATCH_SEQ = {0: "batch", 1: "sequence"}


class _Span(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        kwargs = {"token_type_ids": token_type_ids} if _takes(self.model, "token_type_ids") else {}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs, return_dict=True)
        return out.start_logits, out.end_logits


class _Causal(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids):
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            return_dict=True,
        )
        return out.logits[:, -1:, :]


class _Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder = model.get_encoder()

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state


class _Decoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, decoder_input_ids, encoder_hidden_states, attention_mask):
        from transformers.modeling_outputs import BaseModelOutput

        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden_states),
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            use_cache=False,
            return_dict=True,
        )
        return out.logits[:, -1:, :]


def _takes(model, name: str) -> bool:
    import inspect

    return name in inspect.signature(model.forward).parameters


def _example(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of 8 tokens, the second padded (left-padded tokens are masked out wherever they sit)."""
    ids = torch.randint(4, max(5, min(vocab_size, 1000)), (2, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    return ids, mask


def _export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], axes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about Python branches on shapes: checked by the tests
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )


@torch.no_grad()
def export_graphs(model, kind: str, directory: Path) -> list[str]:
    """Write `kind`'s graphs (`GRAPHS[kind]`) of the merged fp32 `model` (eager attention) into `directory`;
    return their names."""
    model.eval()
    ids, mask = _example(model.config.vocab_size)
    if kind == "span":
        names = ["input_ids", "attention_mask", "token_type_ids"]
        axes = {name: BATCH_SEQ for name in [*names, "start_logits", "end_logits"]}
        _export(
            _Span(model),
            (ids, mask, torch.zeros_like(ids)),
            directory / GRAPHS[kind][0],
            names,
            ["start_logits", "end_logits"],
            axes,
        )
    elif kind == "decoder":
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        names = ["input_ids", "attention_mask", "position_ids"]
        axes = {**{name: BATCH_SEQ for name in names}, "logits": {0: "batch"}}
        _export(_Causal(model), (ids, mask, positions), directory / GRAPHS[kind][0], names, ["logits"], axes)
    elif kind == "encoder-decoder":
        encoder, decoder = GRAPHS[kind]
        enc_axes = {name: BATCH_SEQ for name in ("input_ids", "attention_mask", "last_hidden_state")}
        _export(
            _Encoder(model),
            (ids, mask),
            directory / encoder,
            ["input_ids", "attention_mask"],
            ["last_hidden_state"],
            enc_axes,
        )
        hidden = _Encoder(model)(ids, mask)
        start = torch.zeros((2, 3), dtype=torch.long)
        names = ["decoder_input_ids", "encoder_hidden_states", "attention_mask"]
        dec_axes = {
            "decoder_input_ids": {0: "batch", 1: "decoded"},
            "encoder_hidden_states": BATCH_SEQ,
            "attention_mask": BATCH_SEQ,
            "logits": {0: "batch"},
        }
        _export(_Decoder(model), (start, hidden, mask), directory / decoder, names, ["logits"], dec_axes)
    else:
        raise ValueError(kind)
    return list(GRAPHS[kind])


# Why this tolerance: traced fp32 graphs match the torch model to ~1e-6 on logits of order 1-10; a
# graph that froze a shape or skipped the mask is off by far more than 1e-3.
CHECK_ATOL = 1e-3


def _check_inputs(model) -> dict[str, torch.Tensor]:
    """Another shape than the traced example (3 rows of 13 tokens, the last padded)."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(4, max(5, min(model.config.vocab_size, 1000)), (3, 13), generator=generator)
    mask = torch.ones_like(ids)
    mask[2, :5] = 0
    return {
        "ids": ids,
        "mask": mask,
        "positions": (mask.cumsum(-1) - 1).clamp(min=0),
        "start": torch.zeros((3, 4), dtype=torch.long),
    }


@torch.no_grad()
def reference_outputs(model, kind: str) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """The torch model's outputs on `_check_inputs`, taken before tracing (which leaves the traced
    module's eager path unreliable for a second run in the same process)."""
    x = _check_inputs(model)
    if kind == "span":
        out = _Span(model)(x["ids"], x["mask"], torch.zeros_like(x["ids"]))
        return x, list(out)
    if kind == "decoder":
        return x, [_Causal(model)(x["ids"], x["mask"], x["positions"])]
    hidden = _Encoder(model)(x["ids"], x["mask"])
    return x, [hidden, _Decoder(model)(x["start"], hidden, x["mask"])]


def check_graphs(directory: Path, kind: str, model_type: str, reference) -> None:
    """Run the written graphs on `reference_outputs`' inputs and compare with its outputs (as Optimum's
    exporter validates its graphs); a `LoraqaError` names the difference."""
    from loraqa.errors import LoraqaError
    from loraqa.inference.onnx_model import load_sessions, run_session

    x, expected = reference
    sessions = load_sessions(directory, kind)
    if kind == "span":
        got = run_session(
            sessions[0], input_ids=x["ids"], attention_mask=x["mask"], token_type_ids=torch.zeros_like(x["ids"])
        )
    elif kind == "decoder":
        got = run_session(sessions[0], input_ids=x["ids"], attention_mask=x["mask"], position_ids=x["positions"])
    else:
        got = run_session(sessions[0], input_ids=x["ids"], attention_mask=x["mask"])
        got += run_session(
            sessions[1], decoder_input_ids=x["start"], encoder_hidden_states=expected[0], attention_mask=x["mask"]
        )
    keep = x["mask"].bool().numpy()
    for value, wanted in zip(got, expected, strict=True):
        difference = abs(value - wanted.numpy())
        difference = difference[keep] if difference.shape[:2] == keep.shape else difference  # padding is not read
        if difference.max() > CHECK_ATOL:
            raise LoraqaError(
                f"the ONNX graphs of this {model_type} model differ from the torch model by {difference.max():.2g} "
                f"(more than {CHECK_ATOL}); tested architectures: bert, distilbert, t5, gpt2, llama"
            )
