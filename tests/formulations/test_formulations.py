"""Formulation contracts checked directly on tiny models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoTokenizer

from loraqa.config.schema import ModelConfig
from loraqa.data.records import Answer, QARecord
from loraqa.formulations import PredictSettings, choose_formulation
from loraqa.formulations.extractive import best_answer


def setup(path, **model_settings):
    config = ModelConfig(name=str(path), **model_settings)
    formulation = choose_formulation(config, AutoConfig.from_pretrained(path))
    tokenizer = AutoTokenizer.from_pretrained(path)
    formulation.prepare_tokenizer(tokenizer)
    model = formulation.auto_model_class().from_pretrained(path)
    return formulation, tokenizer, model


def records(rows):
    return [QARecord(r["id"], r["context"], r["question"], tuple(Answer(**a) for a in r["answers"])) for r in rows]


def test_causal_answer_only_loss_equals_full_logits_loss(tiny_model_dir, qa_rows):
    formulation, tokenizer, model = setup(tiny_model_dir("gpt2"), max_seq_length=64)
    features = formulation.training_features(records(qa_rows[:6]), tokenizer)
    batch = formulation.collate(features, tokenizer)
    fast = formulation.compute_loss(model, batch)
    # Reference: every position's logits, right-shifted labels, one example at a time, token-weighted.
    total, count = 0.0, 0
    for feature in features:
        ids = torch.tensor([feature["input_ids"]])
        logits = model(input_ids=ids).logits[0, :-1]
        labels = torch.full((ids.shape[1],), -100)
        n = feature["n_target"][0]
        labels[-n:] = ids[0, -n:]
        total += float(F.cross_entropy(logits, labels[1:], ignore_index=-100, reduction="sum"))
        count += n
    assert float(fast) == pytest.approx(total / count, rel=1e-4)
    # collate sizes the kept logits on the host; reading it back from the labels gives the same
    assert batch["logits_to_keep"] == int((batch["labels"] != -100).sum(dim=1).max()) + 1
    without = {k: v for k, v in batch.items() if k != "logits_to_keep"}
    assert float(formulation.compute_loss(model, without)) == pytest.approx(float(fast), rel=1e-6)


def test_causal_labels_end_with_a_real_eos_even_when_pad_is_eos(tiny_model_dir, qa_rows):
    formulation, tokenizer, _ = setup(tiny_model_dir("gpt2"), max_seq_length=64)
    tokenizer.pad_token = tokenizer.eos_token  # as for GPT-2
    batch = formulation.collate(formulation.training_features(records(qa_rows[:4]), tokenizer), tokenizer)
    assert (batch["labels"][:, -1] == tokenizer.eos_token_id).all()
    assert (batch["attention_mask"][:, -1] == 1).all()  # left padding: answers end in the last column
    assert (batch["position_ids"][batch["attention_mask"] == 1].min()) == 0


def test_causal_long_context_is_cut_but_keeps_question_and_budget(tiny_model_dir, qa_rows):
    formulation, tokenizer, _ = setup(tiny_model_dir("llama"), max_seq_length=48)
    long = QARecord("x", " ".join([qa_rows[0]["context"]] * 20), "Who founded Avalon?")
    ids = formulation.prompt_ids(long, tokenizer, reserve=8)
    assert len(ids) <= 40
    assert "Who founded Avalon?" in tokenizer.decode(ids)


def test_closed_book_prompts_leave_the_context_out(tiny_model_dir, qa_rows):
    record = records(qa_rows[:1])[0]
    for family in ("t5", "gpt2"):
        formulation, tokenizer, _ = setup(tiny_model_dir(family), closed_book=True)
        text = tokenizer.decode(formulation.training_features([record], tokenizer)[0]["input_ids"])
        assert record.question in text and "river" not in text


def test_extractive_windows_recover_every_gold_answer_from_perfect_logits(tiny_model_dir, qa_rows):
    formulation, tokenizer, _ = setup(tiny_model_dir("bert"), max_seq_length=48, doc_stride=16)
    padded = []
    for r in records(qa_rows[:10]):
        prefix = "Background noise sentence here. " * 6  # pushes the answer into a later window
        answer = r.answers[0]
        padded.append(
            QARecord(r.id, prefix + r.context, r.question, (Answer(answer.text, answer.answer_start + len(prefix)),))
        )
    windows = formulation.windows(padded, tokenizer)
    assert len(windows) > len(padded)  # long contexts were split
    settings = PredictSettings()
    for index, record in enumerate(padded):
        candidates = []
        for w in windows:
            if w.record_index != index:
                continue
            starts = torch.full((len(w.input_ids),), -10.0).numpy()
            ends = starts.copy()
            starts[w.start_position] = ends[w.end_position] = 10.0
            candidates.append((w, starts, ends))
        assert any(w.start_position > 0 for w, _, _ in candidates)
        text, confidence = best_answer(record, candidates, settings, max_answer_length=30)
        assert text == record.answers[0].text
        assert 0.9 < confidence <= 1.0


def test_squad_v2_no_answer_wins_when_cls_scores_higher(tiny_model_dir, qa_rows):
    formulation, tokenizer, _ = setup(tiny_model_dir("bert"), max_seq_length=64, doc_stride=16)
    record = QARecord("u", qa_rows[0]["context"], "What colour is the sky?")
    (window,) = formulation.windows([record], tokenizer)
    assert (window.start_position, window.end_position) == (0, 0)
    starts = torch.zeros(len(window.input_ids)).numpy()
    ends = starts.copy()
    starts[0] = ends[0] = 5.0
    text, _ = best_answer(record, [(window, starts, ends)], PredictSettings(version_2=True), 30)
    assert text == ""
    text, _ = best_answer(record, [(window, starts, ends)], PredictSettings(version_2=False), 30)
    assert text != ""


def test_seq2seq_labels_pad_with_minus_100(tiny_model_dir, qa_rows):
    formulation, tokenizer, _ = setup(tiny_model_dir("t5"))
    batch = formulation.collate(formulation.training_features(records(qa_rows[:4]), tokenizer), tokenizer)
    labels = batch["labels"]
    assert (labels == -100).any() and not (labels == tokenizer.pad_token_id).any()


def test_seq2seq_labels_end_with_exactly_one_eos_even_when_the_tokenizer_adds_none(tiny_model_dir, qa_rows):
    formulation, tokenizer, _ = setup(tiny_model_dir("t5"), max_seq_length=64, max_answer_length=3)
    assert tokenizer(text_target="Ada")["input_ids"][-1] != tokenizer.eos_token_id  # the tiny T5's BPE adds none
    features = formulation.training_features(records(qa_rows[:6]), tokenizer)
    for feature in features:
        labels = feature["labels"]
        assert labels[-1] == tokenizer.eos_token_id
        assert labels.count(tokenizer.eos_token_id) == 1
        assert len(labels) <= 3  # EOS fits inside max_answer_length
    batch = formulation.collate(features, tokenizer)
    ends = [[t for t in row if t != -100][-1] for row in batch["labels"].tolist()]
    assert ends == [tokenizer.eos_token_id] * len(features)


def test_a_causal_window_too_short_for_the_answer_is_refused_before_loading(
    tiny_model_dir, qa_files, tmp_path, monkeypatch
):
    """A causal model reads the prompt and writes the answer in one model.max_seq_length window:
    generation.max_new_tokens=1000 in a 64-token window cut the prompt to nothing and ended in an
    IndexError inside generate() (during the baseline); now one line, before any weights load."""
    from run_helpers import tiny_config

    import loraqa.pipeline.prepare_phase as prepare_phase
    from loraqa.errors import ConfigError
    from loraqa.pipeline import run_training

    monkeypatch.setattr(prepare_phase, "load_model", lambda *a, **k: pytest.fail("weights loaded before the refusal"))
    run = tmp_path / "run"
    for override, key in [
        ("generation.max_new_tokens=64", "'generation.max_new_tokens'"),
        ("model.max_answer_length=63", "'model.max_answer_length'"),
    ]:
        with pytest.raises(ConfigError) as caught:
            run_training(tiny_config(tiny_model_dir("gpt2"), qa_files, run, override))
        assert key in str(caught.value) and "model.max_seq_length=64" in str(caught.value)
    assert not run.exists()
