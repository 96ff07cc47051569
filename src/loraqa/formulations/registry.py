"""Which formulation answers for a model: the name -> class table and the choice from the architecture."""

from __future__ import annotations

from loraqa import families
from loraqa.config.schema import ModelConfig
from loraqa.errors import ConfigError
from loraqa.formulations.base import Formulation
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
    return name


def choose_formulation(model_config: ModelConfig, hf_config) -> Formulation:
    """The formulation for this model; building it checks the settings it asks of `model.*`."""
    return FORMULATIONS[formulation_name_for(model_config, hf_config)](model_config)
