"""Request and response bodies of the HTTP API (pydantic: the validation and the OpenAPI docs).

Types are strict (a number is not a question) and unknown fields are refused, so a typo in a
field name is an error rather than a silently ignored option. Limits that depend on the server's
settings (context length, batch size) are checked in the app, which knows them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from loraqa.data.validate import text_problem


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: StrictStr = Field(description="the question", examples=["Who founded Avalon?"])
    context: StrictStr = Field(description="the text the answer is taken from")
    adapter: StrictStr | None = Field(None, description="adapter name (GET /v1/adapters); default: the first served")
    decoding: StrictStr | None = Field(None, description="greedy (default), beamN, topkK, toppP or tempT")
    min_confidence: float | None = Field(
        None, ge=0.0, le=1.0, description="withhold an answer whose (calibrated) confidence is below this"
    )

    @field_validator("question", "context", "adapter", "decoding")
    @classmethod
    def _valid_text(cls, value: str | None) -> str | None:
        # Checked per request, before batching: a lone surrogate fails the tokenizer of the whole batch.
        problem = None if value is None else text_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("question", "context")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


AnswerBatch = Annotated[list[AnswerRequest], Field(min_length=1)]


class AnswerResponse(BaseModel):
    answer: str = Field(description="the answer text, as `loraqa predict` gives it")
    confidence: float = Field(description="the model's probability of this answer, in [0, 1]")
    start: int | None = Field(description="character offset of the answer in the context; null when absent")
    end: int | None = Field(description="character offset just past the answer; null when absent")
    no_answer: bool = Field(description="the model answered nothing (empty answer)")
    abstained: bool = Field(False, description="confidence below min_confidence: the answer was withheld")
    adapter: str
    latency_ms: float = Field(description="from the request's arrival to this answer")


class AdapterInfo(BaseModel):
    name: str
    default: bool
    base_model: str
    formulation: str
    shares_base: bool = Field(description="loaded as a named adapter on a base shared with other adapters")
    trainable_percent: float | None = Field(description="adapter parameters in percent of base + adapter parameters")
    exact_match: float | None = Field(description="EM recorded by the run next to the adapter (metrics.json)")
    f1: float | None


class AdaptersResponse(BaseModel):
    adapters: list[AdapterInfo]


class HealthResponse(BaseModel):
    status: str
    adapters: int
    pending: int = Field(description="questions waiting for the model")
    busy: bool = Field(description="a batch is running now")


class ErrorResponse(BaseModel):
    error: str = Field(description="one line saying what is wrong")
