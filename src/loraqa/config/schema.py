"""The configuration tree: every default in one visible place, one per line, with why.

A run is described by `RunConfig`. YAML files and `key=value` overrides are checked against these
dataclasses by `loraqa.config.loader`; names follow transformers and peft so users recognise them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

Precision = Literal["auto", "fp32", "bf16", "fp16"]
QuantizeBase = Literal["none", "4bit", "8bit"]
Device = Literal["auto", "cpu", "cuda", "mps"]
Strategy = Literal["no", "steps", "epoch"]
FormulationName = Literal["auto", "extractive", "seq2seq", "causal"]
BestMetric = Literal["f1", "exact_match", "rouge1", "rouge2", "rougeL", "eval_loss"]
TrackingBackend = Literal["tensorboard", "wandb", "mlflow"]


@dataclass
class DataConfig:
    train: str = "squad-v1.1:train"  # a file (.json[.gz] SQuAD, .jsonl, .csv), a bundled name, or hub:NAME[:SPLIT]
    validation: str | None = None  # None: a seeded slice of `train` becomes the model-selection split
    test: str = "squad-v1.1:dev"  # the official dev set: the honest held-out number
    train_samples: int | None = None  # deterministic subset (seeded shuffle); None keeps all
    # How train_samples draws: "questions" one by one (most contexts), or "paragraphs": every question
    # of a drawn paragraph, as the full train set asks them, so causal training runs each shared
    # context once per batch (training.share_prompt_prefixes; ~1.8x faster for SmolLM2).
    train_sampling: Literal["questions", "paragraphs"] = "questions"
    validation_samples: int = 200  # validation split size, only made when used; carving takes at most 1/10 of train
    test_samples: int | None = None  # evaluate on a seeded subset of the test set; None uses all
    seed: int = 42  # drives sampling and the validation split, separately from training.seed
    skip_invalid: bool = False  # skip bad records with a count instead of stopping at the first
    version_2_with_negative: bool | Literal["auto"] = "auto"  # SQuAD v2 (unanswerable questions)
    max_context_chars: int = 100_000  # longer contexts are refused: a guard against runaway memory
    # Test/validation contexts or questions also in train (exact or near, data/leakage.py): "warn"
    # prints the counts, "error" stops before training, "ignore" skips the check. Counts go to summary.json.
    leakage: Literal["warn", "error", "ignore"] = "warn"


@dataclass
class ModelConfig:
    name: str = "minilm-l6"  # offline name (minilm-l6, smollm2-135m), hub id, or local directory
    formulation: FormulationName = "auto"  # auto picks from the architecture
    closed_book: bool = False  # generative only: the prompt holds the question without the context
    max_seq_length: int = 384  # tokens of prompt (+ answer for causal) or extractive window
    doc_stride: int = (
        128  # extractive: overlap between windows over a long context (unset: a third of a shorter window)
    )
    max_answer_length: int = 30  # extractive: longest span in tokens; generative: longest target
    # Extractive: let segment ids (question 0, context 1) reach the model. Off, every token reads as
    # segment 0, as peft's QUESTION_ANS forward always did; on MiniLM turning it on cost 28 F1 after
    # 2,000 train questions and 2.1 after 30,000 (docs/quality.md).
    use_token_type_ids: bool = False
    use_chat_template: bool | Literal["auto"] = "auto"  # causal: use the tokenizer's chat template
    # Causal: the prompt's text, {question} and {context} where they go; None: the formulation's own.
    # An adapter records the template it trained with (loraqa.json), and answers with that one.
    prompt_template: str | None = None
    add_tokens: list[str] = field(default_factory=list)  # new vocabulary, resized before LoRA
    trust_remote_code: bool = False  # never run a hub repo's code unless asked (it is printed)
    revision: str | None = None  # hub revision to pin
    # SQuAD v2, generative: what the model learns to answer to an unanswerable question (scored as the
    # empty answer such a record's gold means). Recorded with the adapter; "" trains an immediate stop.
    no_answer_text: str = "unanswerable"


@dataclass
class LoraSettings:
    r: int = 8  # rank of the update matrices
    lora_alpha: float = 16  # the update is scaled by lora_alpha / r
    lora_dropout: float = 0.05
    target_modules: str | list[str] = "qv"  # preset (qv, attention, attention_mlp, all_linear) or names
    bias: Literal["none", "all", "lora_only"] = "none"
    modules_to_save: list[str] | None = None  # None: the formulation's default (the extractive QA head)
    # LoRA on these layer indices only; "upper_half" = the top half of each stack. Backward then stops
    # at the lowest adapted layer: faster training, at a quality cost bench/speed.py --upper-half measures
    layers_to_transform: list[int] | Literal["upper_half"] | None = None
    max_trainable_share: float = 0.05  # stop before training when more than this share is trainable
    allow_large_trainable_share: bool = False  # the explicit way past max_trainable_share
    # Variants, all peft's own (docs/lora-variants.md says what each does and which combinations are refused):
    use_dora: bool = False  # DoRA: a trained magnitude per output, LoRA on the direction
    use_rslora: bool = False  # rsLoRA: scale the update by lora_alpha / sqrt(r), steadier at high rank
    # How A and B start: default (B = 0), gaussian, pissa or pissa_niter_N (principal singular vectors,
    # N fast-SVD iterations), olora (QR). pissa/olora move part of each base weight into the adapter;
    # the saved adapter is converted back to plain LoRA, so it loads on the untouched base.
    init: str = "default"
    quantize_base: QuantizeBase = "none"  # QLoRA: load the frozen base in 4 or 8 bits (bitsandbytes, CUDA only)


@dataclass
class TrainingConfig:
    learning_rate: float = 2e-4  # in (0, 1]: LoRA trains at 1e-5..1e-2, above 1 is a typo (validate.py)
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0  # wins over warmup_ratio when > 0
    warmup_ratio: float = 0.0  # scales with batch size, unlike a fixed step count
    weight_decay: float = 0.0
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    max_grad_norm: float = 1.0
    loraplus_lr_ratio: float | None = None  # LoRA+: B matrices learn at this multiple of learning_rate; None: off
    # Stop when the logged training loss exceeds both 10x the first logged loss and 15, worse than a
    # uniform guess over any vocabulary (training/trainer.py DivergenceGuard); false: warn and go on.
    stop_on_divergence: bool = True
    seed: int = 42
    precision: Precision = "auto"  # auto: bf16 on a GPU that has it, fp32 on CPU and MPS, never fp16 on T5
    device: Device = "auto"  # asking for cuda/mps where there is none is an error, not a fallback
    gradient_checkpointing: bool = False  # saves memory, costs ~25% speed; input grads are enabled for LoRA
    eval_strategy: Strategy = "no"
    eval_steps: int | None = None
    save_strategy: Strategy = "steps"  # checkpoints make `--resume` possible after a crash
    save_steps: int = 500
    save_total_limit: int | None = 2  # the best checkpoint is never the one deleted
    load_best_model_at_end: bool = False
    metric_for_best_model: BestMetric = "f1"
    early_stopping_patience: int | None = None  # evaluations without improvement before stopping
    early_stopping_threshold: float = 0.0  # any improvement counts; a larger value stops sooner
    logging_steps: int = 10
    # Where the run is tracked (training/tracking.py): TensorBoard event files under RUN/tensorboard
    # cost nothing and need no account; wandb and mlflow are extras. [] or none: no tracking.
    report_to: list[TrackingBackend] | Literal["none"] = field(default_factory=lambda: ["tensorboard"])
    group_by_length: bool = True  # batches of similar length waste less on padding
    # Causal: questions on one paragraph share a batch, and their prompt's shared start (template +
    # context) runs once; same loss and gradient. Off under gradient checkpointing, which recomputes
    # layers without the KV cache that start lives in. docs/performance.md has the speed.
    share_prompt_prefixes: bool = True
    dataloader_num_workers: int = 0
    torch_threads: int | None = None  # None: torch's default (all cores)


@dataclass
class EvaluationConfig:
    baseline: bool = True  # also evaluate the base model without adapter on the same test split
    batch_size: int = 16
    n_best_size: int = 20  # extractive: candidate starts/ends considered per window
    # SQuAD v2: answer "no answer" when the model prefers it by more than this margin (metrics/abstention.py).
    # auto: the margin that maximised F1 on the validation split, never test, stored with the adapter
    # (its loraqa.json); 0.0 where there is none. A number wins over the adapter's.
    null_score_diff_threshold: float | Literal["auto"] = "auto"
    # eval_loss and token/position accuracy; generative models pay one extra teacher-forced pass (~+60% eval time)
    with_loss: bool = True


@dataclass
class GenerationSettings:
    # greedy, beamN, topkK, toppP, tempT (as in `loraqa eval --decoding`), each number in a sane range
    # (decoding.RANGES: N <= 64 beams, K in [1, 1000], P in [0.01, 1], T in [0.01, 10])
    decoding: str = "greedy"
    max_new_tokens: int = 24  # SQuAD answers are short; longer budgets mostly buy rambling
    stop_at_newline: bool = True  # an answer is one line


@dataclass
class RunConfig:
    name: str = "run"
    output_dir: str = "runs/{name}"  # {name} is replaced by `name`
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    generation: GenerationSettings = field(default_factory=GenerationSettings)

    @property
    def run_dir(self) -> str:
        return self.output_dir.replace("{name}", self.name)


# The keys a loaded config's file or overrides set, per section object (config/loader.py records them):
# a default loraqa may fit to the model (model.max_seq_length) is told from a value the user chose.
_SET_KEYS = "_loraqa_set_keys"


def record_set_keys(section, keys) -> None:
    object.__setattr__(section, _SET_KEYS, frozenset(keys))


def replace_keeping_set_keys(section, **changes):
    """`dataclasses.replace` that keeps the record of what the user set (a replaced section would
    otherwise read as built in code, every key set)."""
    replaced = dataclasses.replace(section, **changes)
    keys = getattr(section, _SET_KEYS, None)
    if keys is not None:
        record_set_keys(replaced, keys)
    return replaced


def set_by_user(section, key: str) -> bool:
    """Whether the user set `key` of this section; True for a section built in code (nothing to fit)."""
    keys = getattr(section, _SET_KEYS, None)
    return True if keys is None else key in keys


def default_doc_stride(max_seq_length: int) -> int:
    """`doc_stride` when the user set none and its default does not fit under the window: a third of it,
    the default's own share of the default window (128 of 384)."""
    return max(1, min(ModelConfig.doc_stride, max_seq_length // 3))
