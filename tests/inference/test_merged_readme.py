"""A merged model directory says what it is and how it was made, and its loraqa command answers
with the settings the adapter answered with."""

from __future__ import annotations

import datetime
import shlex
from types import SimpleNamespace

from loraqa.config.loader import load_config
from loraqa.config.schema import ModelConfig
from loraqa.formulations import FORMULATIONS
from loraqa.inference.merge import merged_readme
from loraqa.version import __version__

TEMPLATE = "Read: {context}\nQ: {question}\nA:"


def test_merged_readme_names_base_adapter_version_date_formulation_prompt_and_loading():
    config = ModelConfig(name="tiny-gpt2", formulation="causal", prompt_template=TEMPLATE, max_seq_length=256)
    ready = SimpleNamespace(
        model_config=config, spec=SimpleNamespace(formulation=FORMULATIONS["causal"](config)), adapter="runs/r/adapter"
    )
    text = merged_readme(ready, when=datetime.datetime(2026, 12, 7, 2, 10, tzinfo=datetime.timezone.utc))
    assert "`tiny-gpt2`" in text and "`runs/r/adapter`" in text and f"loraqa {__version__}" in text
    assert "2026-12-07 02:10 UTC" in text and "causal" in text
    assert 'AutoModelForCausalLM.from_pretrained("DIR")' in text
    assert "Read: {context}\\nQ: {question}" in text  # the prompt, as the formulation builds it
    command = next(line for line in text.splitlines() if line.startswith("loraqa predict --model DIR"))
    settings = [word for word in shlex.split(command) if word.startswith("model.")]
    replayed = load_config(None, settings).model
    assert (replayed.formulation, replayed.prompt_template, replayed.max_seq_length) == ("causal", TEMPLATE, 256)
