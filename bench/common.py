"""What both sides of `bench/speed.py` share: model setups, questions, FLOP accounting, measurements.

Both variants read their hyperparameters from one `Setup` (mirroring the shipped configs), take the
same train and dev questions, and are timed and measured the same way, so the only differences left
are the ones the benchmark is about (padding, sampling, loss, generation).
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from loraqa.config.schema import LoraSettings, ModelConfig, TrainingConfig
from loraqa.data.records import QARecord
from loraqa.data.sources import load_records
from loraqa.data.splits import sample_records, split_train_validation

TRAIN_SOURCE = "squad-v1.1:train"
DEV_SOURCE = "squad-v1.1:dev"


@dataclass
class Setup:
    """One model's benchmark settings; hyperparameters follow its config in configs/."""

    key: str
    model: ModelConfig
    lora: LoraSettings
    training: TrainingConfig
    eval_batch_size: int
    max_new_tokens: int = 24
    notes: str = ""


def _training(**kwargs) -> TrainingConfig:
    # Benchmark runs measure training only: no checkpoints, no evaluation during training.
    return TrainingConfig(device="cpu", precision="fp32", save_strategy="no", eval_strategy="no", **kwargs)


def setups(tiny_t5_dir: str | None = None) -> dict[str, Setup]:
    """The benchmarked models; `tiny-t5` needs the directory `build_tiny_t5` wrote."""
    table = {
        # configs/smollm2-135m-squad.yaml as it was before the quality recipe (r16, attention + MLP, lr 7e-4);
        # kept at r8 / attention so speed results stay comparable across runs
        "smollm2-135m": Setup(
            key="smollm2-135m",
            model=ModelConfig(name="smollm2-135m", max_seq_length=320, max_answer_length=24),
            lora=LoraSettings(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="attention"),
            training=_training(learning_rate=5e-4, warmup_ratio=0.05, per_device_train_batch_size=8),
            eval_batch_size=32,  # as configs/smollm2-135m-squad.yaml since the shared prompt passes (was 8)
        ),
        # configs/minilm-l6-squad.yaml as it was before the batch-size search of 2026-12-02 (batch 16,
        # now 4); kept at 16 so speed results stay comparable across runs
        "minilm-l6": Setup(
            key="minilm-l6",
            model=ModelConfig(name="minilm-l6", max_seq_length=256, doc_stride=128),
            lora=LoraSettings(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="attention_mlp"),
            training=_training(learning_rate=1e-3, warmup_ratio=0.1, per_device_train_batch_size=16),
            eval_batch_size=32,
        ),
    }
    if tiny_t5_dir:
        table["tiny-t5"] = Setup(  # the seq2seq path; lengths of configs/flan-t5-small-squad.yaml
            key="tiny-t5",
            model=ModelConfig(name=tiny_t5_dir, max_seq_length=384, max_answer_length=64),
            lora=LoraSettings(
                r=8, lora_alpha=16, lora_dropout=0.05, target_modules="qv", allow_large_trainable_share=True
            ),
            training=_training(learning_rate=1e-3, warmup_ratio=0.05, per_device_train_batch_size=8),
            eval_batch_size=16,
            notes="randomly initialised: F1 is ~0 by construction, only speed and identity mean something",
        )
    return table


MODEL_KEYS = ("smollm2-135m", "minilm-l6", "tiny-t5")


# --- questions --------------------------------------------------------------------------------


def questions(
    n_train: int, n_eval: int, seed: int, *, whole_paragraphs: bool = False, train_paragraphs: bool = False
) -> tuple[list[QARecord], list[QARecord]]:
    """The same seeded SQuAD v1.1 train questions and official dev questions for every variant.

    Questions are drawn one by one (~1 per paragraph at these sizes), or as all the questions of
    seeded paragraphs (~5 each), the way the full train and dev sets ask them: `train_paragraphs`
    for train questions, `whole_paragraphs` for dev questions.
    """
    train_records = load_records(TRAIN_SOURCE).records
    if train_paragraphs:
        _, train = split_train_validation(train_records, n_train, seed, source=TRAIN_SOURCE)
    else:
        train = sample_records(train_records, n_train, seed)
    dev_records = load_records(DEV_SOURCE).records
    if whole_paragraphs and n_eval:
        _, dev = split_train_validation(dev_records, n_eval, seed, source=DEV_SOURCE)
    else:
        dev = sample_records(dev_records, n_eval, seed)
    return train, dev


def records_of_length(tokenizer, model_config: ModelConfig, target: int, n: int, seed: int) -> list[QARecord]:
    """`n` train questions whose single extractive window is `target` tokens long, give or take 12%.

    Used by the growth benchmark: each length bucket trains on windows of about one length.
    """
    pool = load_records(TRAIN_SOURCE).records
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    low = int(target * 0.88)
    chosen: list[QARecord] = []
    for start in range(0, len(order), 2000):
        chunk = [pool[i] for i in order[start : start + 2000]]
        encoded = tokenizer(
            [r.question.lstrip() for r in chunk],
            [r.context for r in chunk],
            truncation="only_second",
            max_length=model_config.max_seq_length,
            stride=model_config.doc_stride,
            return_overflowing_tokens=True,
            padding=False,
        )
        windows: dict[int, list[int]] = {}
        for i, ids in enumerate(encoded["input_ids"]):
            windows.setdefault(encoded["overflow_to_sample_mapping"][i], []).append(len(ids))
        for index, lengths in windows.items():
            if len(lengths) == 1 and low <= lengths[0] <= target:
                chosen.append(chunk[index])
                if len(chosen) == n:
                    return chosen
    raise RuntimeError(f"only {len(chosen)} train questions have a single window of ~{target} tokens")


# --- the tiny T5 ----------------------------------------------------------------------------------


def build_tiny_t5(directory: Path, seed: int = 0) -> Path:
    """A small randomly initialised T5 with a byte-level BPE tokenizer trained on SQuAD text.

    Built like tests/tiny_models.py, a little wider (d_model 64) and with a 2,000-token vocabulary,
    so SQuAD prompts tokenize to realistic lengths (~1.5x a real T5 tokenizer's count).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoModelForSeq2SeqLM, PreTrainedTokenizerFast, T5Config

    records = sample_records(load_records(TRAIN_SOURCE).records, 3000, seed)
    corpus = sorted({r.context for r in records}) + [r.question for r in records]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<pad>", "</s>", "<unk>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_kv=16,
        d_ff=256,
        num_layers=2,
        num_heads=4,
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = AutoModelForSeq2SeqLM.from_config(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# --- FLOPs ------------------------------------------------------------------------------------------


@dataclass
class FlopModel:
    """Useful training FLOPs of a frozen base with LoRA, counted on real (non-pad) tokens only.

    Linear layers: 4 x params x tokens (forward 2N, backward activation gradient 2N; the frozen
    weights get no weight gradient and LoRA's own FLOPs are negligible). Embedding lookups are not
    FLOPs. An LM head counts only on answer tokens (the positions the loss needs). Attention score
    and value matmuls: 4 x L x L' x width per layer forward, x3 with their backward (all operands are
    activations); a causal mask halves the useful part.
    """

    body_params: int  # linear weights applied to every token (encoder, or decoder-only)
    decoder_params: int = 0  # seq2seq: decoder weights, applied to target tokens
    head_params: int = 0  # LM head (vocab x hidden), applied to answer tokens
    layers: int = 0
    decoder_layers: int = 0
    width: int = 0  # heads x head_dim of the attention
    causal: bool = False

    def train_flops(self, lengths: list[int], target_lengths: list[int]) -> float:
        """Total useful training FLOPs for examples of `lengths` real tokens (and answer lengths)."""
        tokens, targets = sum(lengths), sum(target_lengths)
        flops = 4.0 * self.body_params * tokens + 4.0 * self.head_params * targets
        flops += 4.0 * self.decoder_params * targets
        share = 0.5 if self.causal else 1.0
        for length, target in zip(lengths, target_lengths, strict=True):
            attention = self.layers * share * length * length
            if self.decoder_layers:  # self-attention over the answer (causal) + cross-attention
                attention += self.decoder_layers * (0.5 * target * target + target * length)
            flops += 3 * 4.0 * self.width * attention
        return flops


def flop_model(model, formulation_name: str) -> FlopModel:
    """Count a loaded base model's parameters by role (LoRA's own weights, if attached, left out)."""
    config = model.config
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    head = model.get_output_embeddings() if formulation_name != "extractive" else None
    head_params = head.weight.numel() if head is not None else 0
    head_ids = {id(head.weight)} if head is not None else set()

    def linear_params(module) -> int:
        # The base's own weights: LoRA's and peft's copies of modules_to_save are not the model's FLOPs.
        return sum(
            p.numel()
            for n, p in module.named_parameters()
            if id(p) not in embeddings | head_ids and "lora_" not in n and "modules_to_save" not in n
        )

    if formulation_name == "seq2seq":
        width = config.num_heads * config.d_kv
        return FlopModel(
            body_params=linear_params(model.encoder),
            decoder_params=linear_params(model.decoder),
            head_params=head_params,
            layers=config.num_layers,
            decoder_layers=config.num_decoder_layers,
            width=width,
        )
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return FlopModel(
        body_params=linear_params(model),
        head_params=head_params,
        layers=config.num_hidden_layers,
        width=heads * head_dim,
        causal=formulation_name == "causal",
    )


# --- machine measurements ----------------------------------------------------------------------------


def matmul_peak(threads: int, sizes=(2048, 3072, 4096), repeats: int = 3) -> dict:
    """fp32 torch.matmul GFLOP/s on square matrices with `threads` threads: median and all samples."""
    torch.set_num_threads(threads)
    samples = []
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.matmul(a, b)  # warm-up: first call allocates and picks kernels
        for _ in range(repeats):
            started = time.perf_counter()
            torch.matmul(a, b)
            samples.append(2 * n**3 / (time.perf_counter() - started) / 1e9)
    return {
        "threads": threads,
        "median_gflops": round(statistics.median(samples), 1),
        "samples": [round(s, 1) for s in samples],
    }


def vm_hwm_mib() -> float:
    """This process's peak resident memory so far (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    def __call__(self, name: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.started = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[name] = round(time.perf_counter() - self.started, 3)

        return _Span()


def write_json(path: str | os.PathLike, data: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# --- what each variant reports about its training --------------------------------------------------


class CountingCollate:
    """Wraps a collate function and counts the token positions the model is fed, padding included,
    and, for a causal batch split into a shared-prefix pass and a second pass, the real tokens each
    pass runs (`computed`: row lengths and answer lengths, for the FLOPs that were really done)."""

    def __init__(self, collate, seq2seq: bool):
        self.collate = collate
        self.seq2seq = seq2seq  # decoder positions (labels) are fed too
        self.positions = 0
        self.computed: tuple[list[int], list[int]] = ([], [])

    def __call__(self, features):
        batch = self.collate(features)
        self.positions += batch["input_ids"].numel() + (batch["labels"].numel() if self.seq2seq else 0)
        if "prefix_input_ids" in batch:
            self.positions += batch["prefix_input_ids"].numel()
            width = batch["input_ids"].shape[1]
            rest = batch["attention_mask"][:, -width:].sum(dim=1).tolist()
            self.computed[0].extend(batch["prefix_attention_mask"].sum(dim=1).tolist() + rest)
            self.computed[1].extend([0] * batch["prefix_input_ids"].shape[0] + [f["n_target"][0] for f in features])
        elif "n_target" in features[0]:
            self.computed[0].extend(len(f["input_ids"]) for f in features)
            self.computed[1].extend(f["n_target"][0] for f in features)
        return batch


def train_report(
    *,
    questions: int,
    lengths: list[int],
    targets: list[int],
    seq2seq: bool,
    positions: int,
    seconds: float,
    loss: float,
    flops: FlopModel,
    computed: tuple[list[int], list[int]] | None = None,
) -> dict:
    """Throughput of one training run over `questions` questions (their features have real
    `lengths` and answer `targets` lengths); `positions` is what the model was fed with padding.

    With `computed` (the rows that really ran, when shared prompt starts ran once per batch), the
    FLOPs and MFU count those rows, not the examples' tokens: sharing does less work, and MFU is
    about how fast the work done was done. A row after a shared prefix counts its attention over its
    own tokens only, not over the prefix, so that MFU is a little low, never high.
    """
    real = sum(lengths) + (sum(targets) if seq2seq else 0)
    shared = computed is not None and sum(computed[0]) < sum(lengths)
    ran = sum(computed[0]) if shared else real  # real tokens that went through the model
    total_flops = flops.train_flops(*computed) if shared else flops.train_flops(lengths, targets)
    return {
        "questions": questions,
        "features": len(lengths),
        "real_tokens": real,
        "computed_tokens": ran,
        "fed_positions": positions,
        "padding_share": round(1 - ran / positions, 3) if positions else None,  # of the positions that ran
        "seconds": round(seconds, 2),
        "examples_per_s": round(questions / seconds, 3),
        "tokens_per_s": round(real / seconds, 1),
        "useful_gflops": round(total_flops / 1e9, 1),
        "useful_gflop_per_s": round(total_flops / seconds / 1e9, 2),
        "train_loss": round(loss, 4),
    }
