"""What each formulation asks of `model.*` settings, readable without torch.

The config layer checks them when a config loads (an explicit formulation), and choosing a formulation
checks them again once 'auto' has resolved to one (`Formulation.check`): one home for both.
"""

from __future__ import annotations

from loraqa.config.schema import ModelConfig
from loraqa.errors import ConfigError


def check_model_config(formulation: str, model_config: ModelConfig) -> None:
    """Refuse (ConfigError) model settings `formulation` cannot honour; 'auto' has none to check yet."""
    if formulation == "extractive":
        _check_extractive(model_config)


def _check_extractive(model_config: ModelConfig) -> None:
    # Windows over a long context must overlap by less than their length, or they never advance.
    if model_config.doc_stride >= model_config.max_seq_length:
        raise ConfigError(
            "model.doc_stride", f"must be smaller than model.max_seq_length ({model_config.max_seq_length})"
        )
    if model_config.closed_book:
        raise ConfigError("model.closed_book", "an extractive model needs the context; use seq2seq or causal")
