"""The README an export carries: what is in the directory and how plain runtimes call it."""

from __future__ import annotations

_EXTRACTIVE = """```python
import numpy as np, onnxruntime as ort
from transformers import AutoTokenizer

tok = AutoTokenizer.from_pretrained("DIR")
session = ort.InferenceSession("DIR/model.onnx")
enc = tok(question, context, return_tensors="np", truncation="only_second", max_length={max_seq_length},
          return_offsets_mapping=True)
offsets = enc.pop("offset_mapping")[0]
names = {{i.name for i in session.get_inputs()}}
start, end = session.run(None, {{k: v for k, v in enc.items() if k in names}})
inside = np.array(enc.sequence_ids(0)) == 1  # context tokens only
scores = np.where(inside, start[0], -np.inf)[:, None] + np.where(inside, end[0], -np.inf)[None, :]
scores[np.tril_indices(len(inside), -1)] = -np.inf  # end before start
scores[np.triu_indices(len(inside), {max_answer_length})] = -np.inf  # longer than max_answer_length
s, e = np.unravel_index(scores.argmax(), scores.shape)
print(context[offsets[s][0]:offsets[e][1]])
```

A context longer than one window: loraqa slides windows of {max_seq_length} tokens with a stride of
{doc_stride} and keeps the best pair over all of them (`loraqa predict --model DIR` does that for you).
```"""

_CAUSAL = """```python
import numpy as np, onnxruntime as ort
from transformers import AutoTokenizer

tok = AutoTokenizer.from_pretrained("DIR")
session = ort.InferenceSession("DIR/model.onnx")
ids = tok(prompt)["input_ids"]  # the prompt below
for _ in range({max_new_tokens}):  # greedy; no KV cache: each step reruns the whole sequence
    x = np.array([ids])
    logits, = session.run(None, {{"input_ids": x, "attention_mask": np.ones_like(x),
                                  "position_ids": np.arange(x.shape[1])[None]}})
    token = int(logits[0, -1].argmax())
    if token == tok.eos_token_id or "\\n" in tok.decode([token]):
        break
    ids.append(token)
print(tok.decode(ids[len(tok(prompt)["input_ids"]):]))
```"""

_SEQ2SEQ = """```python
import numpy as np, onnxruntime as ort
from transformers import AutoTokenizer

tok = AutoTokenizer.from_pretrained("DIR")
encoder = ort.InferenceSession("DIR/encoder.onnx")
decoder = ort.InferenceSession("DIR/decoder.onnx")
enc = tok(prompt, return_tensors="np")  # the prompt below
hidden, = encoder.run(None, {{"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}})
out = [{decoder_start}]  # config.json's decoder_start_token_id
for _ in range({max_new_tokens}):  # greedy; no KV cache: each step reruns the decoder over its tokens
    logits, = decoder.run(None, {{"decoder_input_ids": np.array([out]), "encoder_hidden_states": hidden,
                                  "attention_mask": enc["attention_mask"]}})
    token = int(logits[0, -1].argmax())
    if token == tok.eos_token_id:
        break
    out.append(token)
print(tok.decode(out[1:], skip_special_tokens=True))
```"""


def onnx_readme(ready, kind: str) -> str:
    config = ready.model_config
    lines = [
        f"# {ready.spec.model_type} QA model, exported by loraqa as ONNX ({kind})",
        "",
        f"Base `{config.name}` with the adapter `{ready.adapter}` merged in (fp32, ONNX opset 17).",
        "",
        "## With loraqa (same windowing and answer rules as training's evaluation)",
        "",
        "```",
        "loraqa predict --model DIR --question 'Who founded Avalon?' --context '...'",
        "loraqa eval --model DIR data.test=questions.jsonl",
        "loraqa serve --model DIR --base-only",
        "```",
        "",
        "## With plain onnxruntime",
        "",
    ]
    if kind == "span":
        lines.append(
            _EXTRACTIVE.format(
                max_seq_length=config.max_seq_length,
                doc_stride=config.doc_stride,
                max_answer_length=config.max_answer_length,
            )
        )
    else:
        body = _CAUSAL if kind == "decoder" else _SEQ2SEQ
        start = getattr(ready.model.config, "decoder_start_token_id", None)
        lines.append(body.format(max_new_tokens=24, decoder_start=start))
        lines += ["", "The prompt is built as loraqa built it in training:", ""]
        lines += ready.spec.formulation.usage_notes()
    lines += [
        "",
        "Files: the graphs (`*.onnx`), `config.json`, the tokenizer, and `loraqa_export.json` "
        "(the model settings loraqa answers with).",
    ]
    return "\n".join(lines) + "\n"
