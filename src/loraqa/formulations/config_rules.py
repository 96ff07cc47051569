"""What each formulation asks of `model.*` settings, readable without torch.

The config layer checks them when a config loads (an explicit formulation), and choosing a formulation
checks them again once 'auto' has resolved to one (`Formulation.check`): one home for both.
"""

from __future__ import annotations

import re

from loraqa.config.schema import ModelConfig
from loraqa.errors import ConfigError

# What a prompt template may hold in braces: exactly these, so str.format and render_prompt agree.
_FIELDS = re.compile(r"\{(question|context)\}")


def check_model_config(formulation: str, model_config: ModelConfig) -> None:
    """Refuse (ConfigError) model settings `formulation` cannot honour; 'auto' has none to check yet."""
    if formulation == "extractive":
        _check_extractive(model_config)
    if model_config.prompt_template is not None and formulation != "auto":
        if formulation != "causal":
            raise ConfigError(
                "model.prompt_template", f"only a causal model's prompt is a template, not {formulation}'s"
            )
        check_prompt_template(model_config.prompt_template, model_config.closed_book)


def check_prompt_template(template: str, closed_book: bool) -> None:
    needs = ("{question}",) if closed_book else ("{question}", "{context}")
    missing = [field for field in needs if field not in template]
    if missing:
        raise ConfigError("model.prompt_template", f"must contain {' and '.join(missing)}, got {template!r}")
    if "{" in _FIELDS.sub("", template) or "}" in _FIELDS.sub("", template):
        raise ConfigError(
            "model.prompt_template", f"may hold only {{question}} and {{context}} in braces, got {template!r}"
        )


def render_prompt(template: str, question: str, context: str) -> str:
    """The template with its fields filled in one pass (a context that holds '{question}' stays as written)."""
    values = {"question": question, "context": context}
    return _FIELDS.sub(lambda match: values[match.group(1)], template)


def _check_extractive(model_config: ModelConfig) -> None:
    # Windows over a long context must overlap by less than their length, or they never advance.
    if model_config.doc_stride >= model_config.max_seq_length:
        raise ConfigError(
            "model.doc_stride", f"must be smaller than model.max_seq_length ({model_config.max_seq_length})"
        )
    if model_config.closed_book:
        raise ConfigError("model.closed_book", "an extractive model needs the context; use seq2seq or causal")
