"""QA formulations behind one interface; `choose_formulation` picks one from the architecture."""

from __future__ import annotations

from loraqa import families
from loraqa.config.schema import ModelConfig
from loraqa.errors import ConfigError
from loraqa.formulations.base import Formulation, Prediction, PredictResult, PredictSettings
from loraqa.formulations.causal import CausalFormulation
from loraqa.formulations.extractive import ExtractiveFormulation
from loraqa.formulations.seq2seq import Seq2SeqFormulation

FORMULATIONS: dict[str, type[Formulation]] = {
    "extractive": ExtractiveFormulation,
    "seq2seq": Seq2SeqFormulation,
    "causal": CausalFormulation,
}


def formulation_name_for(model_config: ModelConfig, hf_config) -> str:
    """The formulation the config asks for, or the one the architecture implies ('auto')."""
    if model_config.formulation != "auto":
        name = model_config.formulation
    elif getattr(hf_config, "is_encoder_decoder", False):
        name = "seq2seq"
    elif families.is_encoder_only(hf_config.model_type):
        name = "extractive"
    else:
        name = "causal"
    if name != "extractive" and families.is_encoder_only(hf_config.model_type):
        raise ConfigError("model.formulation", f"'{hf_config.model_type}' is an encoder: only 'extractive' fits it")
    if name == "extractive" and model_config.closed_book:
        raise ConfigError("model.closed_book", "an extractive model needs the context; use seq2seq or causal")
    return name


def choose_formulation(model_config: ModelConfig, hf_config) -> Formulation:
    return FORMULATIONS[formulation_name_for(model_config, hf_config)](model_config)


__all__ = [
    "FORMULATIONS", "Formulation", "PredictResult", "PredictSettings", "Prediction",
    "choose_formulation", "formulation_name_for",
]  # fmt: skip
