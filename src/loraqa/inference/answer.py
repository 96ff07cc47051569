"""Answers to questions about a context: the one `Answer` that `loraqa predict` prints, the server
returns and the Python API (`loraqa.load(...).answer`) gives, made by one function, `answer`.

An adapter trained on SQuAD v2 may answer "no answer": its `text` is "" and `no_answer` true.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loraqa.inference.offsets import answer_offsets

if TYPE_CHECKING:  # `import loraqa` re-exports Answer and stays light: nothing here imports torch
    from loraqa.config.schema import RunConfig
    from loraqa.data.records import QARecord
    from loraqa.inference.ready import ReadyModel


@dataclass(frozen=True)
class Answer:
    text: str  # "" when the model gives no answer (or the answer is withheld)
    confidence: float  # the probability of this answer, in [0, 1]: calibrated when the adapter carries a calibration
    start: int | None  # character offset of the answer in the context (None when not a span of it)
    end: int | None  # just past the answer
    no_answer: bool  # no answer is given: a SQuAD v2 adapter chose "no answer", the text is empty, or withheld
    abstained: bool = False  # confidence below min_confidence: the answer was withheld (text "")
    raw_confidence: float | None = None  # the model's own probability, before calibration
    id: str = ""  # the question's id (its line number or own id in `loraqa predict --input`)
    question: str = ""

    def withheld_below(self, min_confidence: float | None) -> Answer:
        """This answer, or, when its confidence is below `min_confidence`, the answer withheld:
        text "", no offsets, `abstained` true."""
        if min_confidence is None or self.confidence >= min_confidence:
            return self
        return dataclasses.replace(self, text="", start=None, end=None, no_answer=True, abstained=True)

    def prediction_row(self) -> dict:
        """The JSON line `loraqa predict` writes for this answer."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.text,
            "no_answer": self.no_answer,
            "confidence": self.confidence,
            "raw_confidence": self.raw_confidence,
            "abstained": self.abstained,
        }


def answer(
    ready: ReadyModel,
    config: RunConfig,
    records: list[QARecord],
    decoding: str | None = None,
    min_confidence: float | None = None,
) -> list[Answer]:
    """One `Answer` per record, in order; with a SQuAD v2 adapter, `evaluation.null_score_diff_threshold`
    decides no-answers (`auto`: the threshold the adapter chose on its validation split).

    `confidence` is calibrated when the adapter carries a calibration (`calibration.json`, fitted on its
    validation split; `raw_confidence` is the model's own), rounded to 4 places. With `min_confidence`,
    an answer below it is withheld (`Answer.withheld_below`)."""
    from loraqa.inference.evaluate import predict_settings

    settings = predict_settings(config, version_2=ready.version_2, decoding=decoding, adapter=ready.adapter)
    settings.with_loss = False
    result = ready.spec.formulation.predict(ready.model, ready.tokenizer, records, settings)
    return answers_from(ready, records, result.predictions, min_confidence)


def answers_from(
    ready: ReadyModel, records: list[QARecord], predictions: list, min_confidence: float | None = None
) -> list[Answer]:
    """The `Answer`s for `ready`'s predictions (a formulation's `Prediction`s, one per record):
    calibrated with the adapter's calibration, with character offsets, withheld below `min_confidence`."""
    from loraqa.lora.calibration_file import read_calibration

    calibrator = read_calibration(ready.adapter)
    raw = [p.confidence for p in predictions]
    calibrated = calibrator.apply(raw).tolist() if calibrator and raw else raw
    answers = []
    for record, prediction, confidence in zip(records, predictions, calibrated, strict=True):
        start, end = answer_offsets(record.context, prediction.text)
        found = Answer(
            text=prediction.text,
            confidence=round(confidence, 4),
            start=start,
            end=end,
            no_answer=not prediction.text.strip(),
            raw_confidence=round(prediction.confidence, 4),
            id=record.id,
            question=record.question,
        )
        answers.append(found.withheld_below(min_confidence))
    return answers
