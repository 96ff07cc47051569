"""An Ollama Modelfile for a GGUF export: the prompt loraqa trained with, greedy, one line per answer."""

from __future__ import annotations

import json

from loraqa.data.records import QARecord

_QUESTION, _CONTEXT = "QUESTIONSLOT", "CONTEXTSLOT"


def ollama_template(ready) -> str | None:
    """The whole prompt loraqa builds (chat template and answer cue included), with the prompt's body
    (instruction, context, question) as Ollama's `{{ .Prompt }}`; None when the body cannot be found
    in it (then Ollama uses the GGUF's own chat template)."""
    from loraqa.formulations.config_rules import render_prompt

    record = QARecord(id="slot", context=_CONTEXT, question=_QUESTION)
    ids = ready.spec.formulation.prompt_ids(record, ready.tokenizer, reserve=0)
    text = ready.tokenizer.decode(ids, skip_special_tokens=False)
    body = render_prompt(ready.spec.formulation.prompt_template or "", _QUESTION, _CONTEXT)
    if ready.tokenizer.bos_token and text.startswith(ready.tokenizer.bos_token):
        text = text[len(ready.tokenizer.bos_token) :]  # llama.cpp adds BOS itself (the GGUF says whether)
    if body not in text or ready.model_config.closed_book:
        return None
    return text.replace(body, "{{ .Prompt }}")


def modelfile(gguf_file: str, template: str | None) -> str:
    lines = [f"FROM ./{gguf_file}", ""]
    if template is not None:
        lines.append(f"TEMPLATE {json.dumps(template)}")
    lines += [
        "PARAMETER temperature 0",  # loraqa answers greedily
        "PARAMETER num_predict 24",  # generation.max_new_tokens
        'PARAMETER stop "\\n"',  # an answer is one line
        "",
        "# Send the prompt's body as the message: the instruction, then Context: ..., then Question: ...",
        "# (the adapter README's 'Prompt (body)'); the template around it is the one loraqa trained with.",
    ]
    return "\n".join(lines) + "\n"
