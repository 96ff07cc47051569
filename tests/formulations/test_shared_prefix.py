"""Causal prompts that start alike are generated from one pass over their shared start.

The plan must cover every prompt once, keep a token to run in every row, and group questions on
one paragraph; generation through shared prefixes must give the answers (and confidences) of the
plain left-padded batches and of batch 1.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loraqa.config.schema import ModelConfig
from loraqa.data.records import Answer, QARecord
from loraqa.formulations import PredictSettings, generation
from loraqa.formulations.base import batches_by_length
from loraqa.formulations.shared_prefix import MIN_SHARED_TOKENS, PromptBatch, plan_batches
from loraqa.models.loading import inspect_base, load_model, load_tokenizer

TEMPLATE = list(range(1000, 1000 + MIN_SHARED_TOKENS + 4))


def paragraph_prompts(paragraphs: int, questions: int) -> list[list[int]]:
    prompts = []
    for p in range(paragraphs):
        context = [2000 + p * 100 + t for t in range(40 + 3 * p)]
        for q in range(questions):
            prompts.append(TEMPLATE + context + [3000 + 10 * p + q] * (2 + q))
    return prompts


def check_plan(prompts: list[list[int]], batch_size: int) -> list[PromptBatch]:
    batches = plan_batches(prompts, batch_size)
    rows = sorted(i for b in batches for i in b.rows)
    assert rows == list(range(len(prompts)))
    for b in batches:
        assert 1 <= len(b.rows) <= batch_size
        assert len(b.shared) == len(b.rows)
        for i, n in zip(b.rows, b.shared, strict=True):
            assert n == 0 or MIN_SHARED_TOKENS <= n < len(prompts[i])
        # Rows of one batch either all have a prefix pass or none has (an empty prefix row would be
        # all padding in the prefix pass).
        assert all(b.shared) or not any(b.shared)
    return batches


def test_questions_on_one_paragraph_share_their_context():
    prompts = paragraph_prompts(paragraphs=3, questions=4)
    batches = check_plan(prompts, batch_size=8)
    for b in batches:
        for i, n in zip(b.rows, b.shared, strict=True):
            assert n == len(TEMPLATE) + 40 + 3 * (i // 4)  # template + this paragraph's context
    # Whole paragraphs fill the batches: 4 + 4 rows, then the last 4.
    assert sorted(len(b.rows) for b in batches) == [4, 8]


def test_prompts_on_different_paragraphs_share_the_template():
    prompts = paragraph_prompts(paragraphs=6, questions=1)
    batches = check_plan(prompts, batch_size=4)
    assert [b.shared for b in batches] == [[len(TEMPLATE)] * 4, [len(TEMPLATE)] * 2]


def test_a_group_larger_than_a_batch_is_split():
    batches = check_plan(paragraph_prompts(paragraphs=1, questions=7), batch_size=3)
    assert sorted((len(b.rows), any(b.shared)) for b in batches) == [(1, False), (3, True), (3, True)]


def test_a_prompt_alone_in_its_batch_gets_no_prefix_pass():
    prompts = paragraph_prompts(paragraphs=2, questions=3)
    assert all(not any(b.shared) for b in check_plan(prompts, batch_size=1))


def test_short_or_unrelated_prompts_get_no_prefix_pass():
    prompts = [[1, 2, 3], [1, 2, 4], [9] * 30, [8] * 30]
    batches = check_plan(prompts, batch_size=4)
    assert all(not any(b.shared) for b in batches)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=40), min_size=1, max_size=30),
    st.integers(1, 9),
)
def test_plan_covers_every_prompt_once(prompts, batch_size):
    # Few distinct token values make long shared prefixes, duplicates and prefixes of each other.
    check_plan([TEMPLATE[: len(p) % len(TEMPLATE)] + p for p in prompts], batch_size)


def records_on_paragraphs(qa_rows: list[dict]) -> list[QARecord]:
    """Three questions per context, as SQuAD asks several per paragraph."""
    records = []
    for row in qa_rows[:4]:
        for k, question in enumerate(["Who founded it?", "When was it founded?", "What is near it?"]):
            records.append(
                QARecord(
                    id=f"{row['id']}-{k}",
                    question=question,
                    context=row["context"],
                    answers=(Answer(row["answers"][0]["text"], row["answers"][0]["answer_start"]),),
                )
            )
    records.append(QARecord(id="alone", question="Where?", context="A lone context."))
    return records


def plain_plan(prompts, settings, reuse_cache) -> list[PromptBatch]:
    return [
        PromptBatch(rows, [0] * len(rows)) for rows in batches_by_length([len(p) for p in prompts], settings.batch_size)
    ]


def answers(monkeypatch, ready, records, batch_size: int, *, shared: bool = True, first_phase: int = 100, calls=None):
    """(text, confidence) per record; `calls` collects (rows, max_new_tokens) of each generate() call."""
    model, tokenizer, formulation = ready
    with monkeypatch.context() as m:
        if not shared:
            m.setattr(generation, "_plan", plain_plan)
        m.setattr(generation, "FIRST_PHASE_TOKENS", first_phase)
        if calls is not None:
            generate = model.generate
            m.setattr(
                model,
                "generate",
                lambda **kw: calls.append((len(kw["input_ids"]), kw["max_new_tokens"])) or generate(**kw),
            )
        settings = PredictSettings(batch_size=batch_size, max_new_tokens=6, with_loss=False)
        result = formulation.predict(model, tokenizer, records, settings)
    return [(p.text, p.confidence) for p in result.predictions]


def tiny_causal(tiny_model_dir, family: str):
    """A tiny causal model whose matrices are redrawn large (std 0.3): at the usual 0.02 it writes
    the same token for every question, and equal answers would prove nothing."""
    model_config = ModelConfig(name=str(tiny_model_dir(family)))
    spec = inspect_base(model_config)
    tokenizer = load_tokenizer(spec, model_config)
    model = load_model(spec, model_config, tokenizer, torch.device("cpu"))
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.3)
    return model, tokenizer, spec.formulation


def assert_same(got, expected, label):
    assert [t for t, _ in got] == [t for t, _ in expected], label
    for (_, a), (_, b) in zip(got, expected, strict=True):
        assert abs(a - b) < 1e-4, label


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_shared_prefix_generation_gives_the_plain_answers(family, tiny_model_dir, qa_rows, monkeypatch):
    ready = tiny_causal(tiny_model_dir, family)
    model, tokenizer, formulation = ready
    records = records_on_paragraphs(qa_rows)
    prompts = [formulation.generation_prompt(r, tokenizer, PredictSettings(max_new_tokens=6)) for r in records]
    distinct = [
        {tuple(prompts[i][:n]) for i, n in zip(b.rows, b.shared, strict=True) if n} for b in plan_batches(prompts, 8)
    ]
    assert max(len(d) for d in distinct) > 1, "a batch holds several paragraphs, each with its own prefix"
    single = answers(monkeypatch, ready, records, 1, shared=False)
    assert len({t for t, _ in single}) > len(records) // 2, "answers differ from question to question"
    assert_same(answers(monkeypatch, ready, records, 8), single, "shared prefixes")
    assert_same(answers(monkeypatch, ready, records, 8, shared=False), single, "plain batches")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_rows_still_going_after_the_first_phase_continue_alone(family, tiny_model_dir, qa_rows, monkeypatch):
    ready = tiny_causal(tiny_model_dir, family)
    records = records_on_paragraphs(qa_rows)
    # One token id in four stops an answer, so some rows stop within the first phase and some go on.
    stops = list(range(0, len(ready[1]), 4))
    monkeypatch.setattr(generation, "stop_token_ids", lambda tokenizer, stop_at_newline: stops)
    single = answers(monkeypatch, ready, records, 1, shared=False)
    calls: list[tuple[int, int]] = []
    two_phases = answers(monkeypatch, ready, records, 16, first_phase=2, calls=calls)
    assert calls[0][1] == 2 and calls[1][1] == 4, calls  # the batch's first phase, then its open rows
    assert calls[0][0] > calls[1][0] > 0, f"the second phase goes on with fewer rows: {calls}"
    assert_same(two_phases, single, "two phases")
