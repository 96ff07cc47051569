"""The one interface every QA formulation implements.

Data loading, training, evaluation and serving call only this; none of them branch on which
formulation is in use. A formulation knows how to: build its model class, turn `QARecord`s into
training features, collate them, and turn model outputs back into answers with a confidence.
"""

from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from loraqa.config.schema import ModelConfig
from loraqa.data.records import QARecord
from loraqa.formulations.config_rules import check_model_config
from loraqa.metrics.abstention import decide


@dataclass(frozen=True)
class Prediction:
    id: str
    text: str
    confidence: float  # in [0, 1]: the model's probability of this answer (see each formulation)
    # SQuAD v2 only (None otherwise): how much the model prefers "no answer" to `best_answer`, its best
    # non-empty answer (metrics/abstention.py); `text` is "" exactly when this is above the threshold.
    null_score_diff: float | None = None
    best_answer: str | None = None
    best_confidence: float = 0.0  # the confidence `best_answer` has when it is the answer
    null_confidence: float = 0.0  # the confidence "no answer" has when it is the answer

    def at_threshold(self, threshold: float) -> Prediction:
        """This prediction decided at another no-answer threshold (the same one when not SQuAD v2)."""
        if self.null_score_diff is None or self.best_answer is None:
            return self
        if decide(self.null_score_diff, self.best_answer, threshold) == "":
            return dataclasses.replace(self, text="", confidence=self.null_confidence)
        return dataclasses.replace(self, text=self.best_answer, confidence=self.best_confidence)


@dataclass
class PredictSettings:
    batch_size: int = 16
    generate_kwargs: dict[str, Any] = field(default_factory=lambda: {"do_sample": False, "num_beams": 1})
    max_new_tokens: int = 24
    stop_at_newline: bool = True
    n_best_size: int = 20
    null_score_diff_threshold: float = 0.0  # resolved: "auto" is the adapter's or 0.0 (inference/evaluate.py)
    version_2: bool = False
    with_loss: bool = True  # also compute teacher-forced loss and token/position accuracy
    window_tokens: int | None = None  # model.max_seq_length: where the first window ends (evaluation slices)
    # Per record, the peft adapter that answers it (peft's mixed-batch `adapter_names`, "__base__" for the
    # base alone): records for several adapters on one unmerged base share model calls. None: the model as
    # it is. Only for a formulation whose `mixes_adapters` says so, and without `with_loss`.
    adapter_names: list[str] | None = None


@dataclass
class PredictResult:
    predictions: list[Prediction]
    metrics: dict[str, float]  # eval_loss, token_accuracy / start_accuracy, end_accuracy


Progress = Callable[[int], None]  # called with how many records were finished since the last call


class Formulation(ABC):
    """How one family of models answers SQuAD questions."""

    name: str
    peft_task_type: str | None  # peft TaskType value; None for the plain PeftModel
    default_modules_to_save: Sequence[str] = ()
    label_names: Sequence[str] = ("labels",)
    generates = False  # answers come from generate(), so a decoding (greedy, beam4, ...) applies
    prompt_template: str | None = None  # the template its prompts are built from (resolved), recorded with an adapter

    def __init__(self, model_config: ModelConfig):
        self.check(model_config)  # 'auto' is resolved now; the config layer could only check an explicit name
        self.config = model_config

    @classmethod
    def check(cls, model_config: ModelConfig) -> None:
        """Refuse (ConfigError) model settings this formulation cannot honour, before any weights load."""
        check_model_config(cls.name, model_config)

    @classmethod
    def unrecorded_prompt_template(cls, model_config: ModelConfig) -> str | None:
        """The prompt template of an adapter saved before loraqa recorded one (None: no template)."""
        return None

    @abstractmethod
    def auto_model_class(self) -> type:
        """The transformers Auto class that builds this formulation's model."""

    def check_generation(self, max_new_tokens: int) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Refuse a `generation.max_new_tokens` this formulation cannot honour (ConfigError), before
        any weights load. Most can: an encoder-decoder writes into its own sequence."""

    def prepare_tokenizer(self, tokenizer) -> None:
        """Set padding side and pad token as this formulation needs (called once after loading)."""
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    @abstractmethod
    def usage_notes(self) -> list[str]:
        """Markdown lines for an adapter's README: how plain transformers + peft call this model
        (inputs, prompt, reading the answer), built from the same code that builds its inputs."""

    @abstractmethod
    def training_features(self, records: Sequence[QARecord], tokenizer) -> list[dict[str, list[int]]]:
        """Tokenize records into features; each has `input_ids` (its length drives length grouping)."""

    def makes_segment_ids_inert(self) -> bool:
        """Whether loading makes the base's segment (token-type) embeddings inert, so that segment
        ids change nothing (`models.loading.ignore_segment_ids`); the saved adapter then carries the
        inert copy, and plain transformers + peft answer the same with a tokenizer's full output."""
        return False

    @abstractmethod
    def collate(
        self, features: list[dict[str, list[int]]], tokenizer, share_prefixes: bool = False
    ) -> dict[str, torch.Tensor]:
        """Pad a list of features into a batch with as little padding as the batch allows.

        `share_prefixes`: the training pipeline's decision (`training.trainer.shared_prompt_groups`)
        that rows whose prompts share a start run it once; only ever true for a formulation whose
        `prompt_groups` returned groups, and for batches the sampler built from them."""

    def compute_loss(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """A faster loss than the model's own, or None to use `model(**batch).loss`."""
        return None

    def prompt_groups(self, features: list[dict[str, list[int]]]) -> list[list[int]] | None:
        """Index groups of features whose prompts share a start worth running once per batch, for
        the sampler to keep together (and `collate(..., share_prefixes=True)` to split); None when
        this formulation cannot share them."""
        return None

    def mixes_adapters(self, version_2: bool) -> bool:
        """Whether `predict` honours `settings.adapter_names`: every model call it makes passes each
        row's adapter name on, so one call answers for several adapters on one base."""
        return False

    @abstractmethod
    def predict(
        self,
        model,
        tokenizer,
        records: Sequence[QARecord],
        settings: PredictSettings,
        progress: Progress | None = None,
    ) -> PredictResult:
        """Answer every record; with settings.with_loss also score the gold answers."""


def rows_by_adapter(rows: Sequence[int], adapter_of: Sequence[str] | None) -> list[int]:
    """A batch's rows (indices into `adapter_of`, each row's peft adapter) with each adapter's rows side
    by side, otherwise in their order: a mixed batch then slices each adapter's rows instead of
    gathering them (`lora/grouped_lora.py`). Without adapters, the rows as they are."""
    if adapter_of is None:
        return list(rows)
    return sorted(rows, key=lambda row: adapter_of[row])


def batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches of similar length (longest first), so padding is small and OOM shows up early."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def takes_position_ids(model) -> bool:
    """Whether the model's forward takes explicit position ids, which rows with padding inside
    (a shared prefix, then the row's own tokens) need."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PeftModel's forward hides them
    return "position_ids" in inspect.signature(base.forward).parameters
