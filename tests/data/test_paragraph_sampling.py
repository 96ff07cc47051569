"""`data.train_sampling=paragraphs` draws whole SQuAD paragraphs, as the full train set asks them."""

from __future__ import annotations

import pytest

from loraqa.config.loader import load_config
from loraqa.data.prepare import load_run_data
from loraqa.errors import ConfigError


def _train(sampling: str) -> list:
    config = load_config(
        None,
        [
            "data.train=squad-v1.1:dev",
            "data.test=squad-v1.1:dev",
            "data.train_samples=200",
            "data.test_samples=5",
            "data.validation_samples=20",
            f"data.train_sampling={sampling}",
        ],
    )
    return load_run_data(config.data, validation=True)


def test_paragraphs_give_the_same_count_from_far_fewer_contexts_and_never_a_validation_context():
    by_question, by_paragraph = _train("questions"), _train("paragraphs")
    assert len(by_question.train) == len(by_paragraph.train) == 200
    contexts = {r.context for r in by_paragraph.train}
    assert len(contexts) <= 200 / 3  # SQuAD asks ~4.6 questions per paragraph
    assert len({r.context for r in by_question.train}) > 150
    assert by_paragraph.validation == by_question.validation  # carved before sampling, as before
    assert not contexts & {r.context for r in by_paragraph.validation}


def test_an_unknown_sampling_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="train_sampling"):
        load_config(None, ["data.train_sampling=articles"])
