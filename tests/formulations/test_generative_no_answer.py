"""SQuAD v2 for generative formulations: unanswerable questions are trained to answer the no-answer
text; a generated no-answer text scores as "no answer", weighed against the best other answer by the
model's own log probabilities (checked against plain transformers), and HasAns / NoAns are printed."""

from __future__ import annotations

import json

import pytest
import torch
from run_helpers import run_cli, tiny_overrides
from tiny_models import synthetic_v2_records, write_jsonl

import loraqa.formulations.generative as generative
from loraqa.config.schema import ModelConfig
from loraqa.data.records import Answer, QARecord
from loraqa.formulations import FORMULATIONS, PredictSettings

FORMULATION = {"t5": "seq2seq", "gpt2": "causal"}
NO_ANSWER_TOKENS = 12  # "unanswerable" is 10-11 tokens of the tiny vocabulary, and its end token
CONTEXT = "The town of Avalon was founded in 1800 by Ada. It lies near a river and has a market."
RECORDS = [
    QARecord("a", CONTEXT, "Who founded Avalon?", (Answer("Ada", CONTEXT.index("Ada")),)),
    QARecord("u", CONTEXT, "Who painted the market?"),
]


def _loaded(family: str, tiny_model_dir):
    from transformers import AutoTokenizer

    path = str(tiny_model_dir(family))
    formulation = FORMULATIONS[FORMULATION[family]](ModelConfig(name=path, max_seq_length=64))
    tokenizer = AutoTokenizer.from_pretrained(path)
    formulation.prepare_tokenizer(tokenizer)
    model = formulation.auto_model_class().from_pretrained(path).eval()
    return formulation, tokenizer, model


def _plain_logprob(family: str, model, tokenizer, formulation, record: QARecord, target: str) -> float:
    """log P(target + EOS | prompt) by plain transformers: the summed token log probabilities."""
    with torch.no_grad():
        if family == "t5":
            prompt = torch.tensor([formulation.prompt_ids(record, tokenizer)])
            ids = tokenizer(text_target=target)["input_ids"]
            labels = torch.tensor([ids if ids[-1] == tokenizer.eos_token_id else [*ids, tokenizer.eos_token_id]])
            out = model(input_ids=prompt, labels=labels)
            return -float(out.loss) * labels.shape[1]
        answer = tokenizer(" " + target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        prompt = formulation.prompt_ids(record, tokenizer, reserve=len(answer))
        ids = torch.tensor([prompt + answer])
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
        return sum(float(logprobs[len(prompt) - 1 + k, token]) for k, token in enumerate(answer))


@pytest.mark.parametrize("family", ["t5", "gpt2"])
def test_an_unanswerable_question_is_trained_to_answer_the_no_answer_text(family, tiny_model_dir):
    formulation, tokenizer, _ = _loaded(family, tiny_model_dir)
    answerable, unanswerable = formulation.training_features(RECORDS, tokenizer)
    collated = formulation.collate([unanswerable], tokenizer)
    target = [t for t in collated["labels"][0].tolist() if t != -100]
    assert target[-1] == tokenizer.eos_token_id and tokenizer.decode(target[:-1]).strip() == "unanswerable"


@pytest.mark.parametrize("family", ["t5", "gpt2"])
def test_the_no_answer_text_scores_as_no_answer_against_the_best_other_answer(family, tiny_model_dir, monkeypatch):
    formulation, tokenizer, model = _loaded(family, tiny_model_dir)
    calls = []

    def generated(model, tokenizer, prompts, settings, *, decoder_only, progress=None, adapter_names=None):
        """The answerable question gets "Ada"; the other the no-answer text, and "Brun" when it is banned."""
        calls.append(settings.generate_kwargs.get("bad_words_ids"))
        if len(prompts) == 1:
            return [("Brun", 0.5, -1.5)]
        return [("Ada", 0.9, -0.2), ("unanswerable", 0.8, -0.3)]

    monkeypatch.setattr(generative, "generate_answers", generated)
    settings = PredictSettings(version_2=True, with_loss=False, max_new_tokens=8, null_score_diff_threshold=-1e9)
    answered, unanswered = formulation.predict(model, tokenizer, RECORDS, settings).predictions
    assert calls[0] is None and calls[1] and tokenizer.decode(calls[1][0]).strip() == "unanswerable"
    assert (answered.text, unanswered.text) == ("", "")  # -1e9: "no answer" wherever the model weighs it
    null = [_plain_logprob(family, model, tokenizer, formulation, r, "unanswerable") for r in RECORDS]
    assert answered.null_score_diff == pytest.approx(null[0] - (-0.2), abs=1e-3) and answered.best_answer == "Ada"
    assert unanswered.null_score_diff == pytest.approx(null[1] - (-1.5), abs=1e-3) and unanswered.best_answer == "Brun"
    settings.null_score_diff_threshold = 1e9  # nothing abstains: the best other answers
    texts = [p.text for p in formulation.predict(model, tokenizer, RECORDS, settings).predictions]
    assert texts == ["Ada", "Brun"]


@pytest.mark.parametrize("family", ["t5", "gpt2"])
def test_a_generative_run_on_v2_data_reports_has_answer_and_no_answer(family, tiny_model_dir, tmp_path, capsys):
    rows = synthetic_v2_records(40)  # 60 rows, 20 unanswerable
    files = {
        "train": write_jsonl(tmp_path / "train.jsonl", rows[:48]),
        "test": write_jsonl(tmp_path / "test.jsonl", rows[48:]),
    }
    args = tiny_overrides(tiny_model_dir(family), files, tmp_path / "run", "evaluation.baseline=false")
    code, out, _ = run_cli(capsys, "train", *args)
    assert code == 0 and "HasAns F1" in out and "NoAns F1" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["HasAns_total"] == 8 and metrics["NoAns_total"] == 4
    assert metrics["no_answer_threshold"]["chosen_on"] == "validation"
    meta = json.loads((tmp_path / "run" / "adapter" / "loraqa.json").read_text())
    assert meta["model_config"]["no_answer_text"] == "unanswerable" and "no_answer_threshold" in meta


# Per family: how to build a tiny model LoRA can teach an exact text (tests/tiny_models.py), and the
# training that then tells the unanswerable questions apart, in the middle of the range that does.
LEARNS_NO_ANSWER = {
    "gpt2": ({"init_scale": 25.0}, ["training.max_steps=150"]),
    "t5": ({"t5_width": 64}, ["training.max_steps=300", "training.learning_rate=3e-3"]),
}


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_a_tiny_model_trained_on_v2_writes_the_no_answer_text_where_it_belongs(family, qa_rows, tmp_path, capsys):
    """Trained on a v2 file (every third question unanswerable), the model's own greedy generation is the
    no-answer text for each unanswerable test question and something else for each answerable one (not
    good answers: a few hundred steps of a tiny model only learn to tell the two kinds apart)."""
    from tiny_models import build_tiny_model

    import loraqa
    from loraqa.formulations.generation import generate_answers
    from loraqa.inference.evaluate import predict_settings

    built, learning = LEARNS_NO_ANSWER[family]
    corpus = [r["context"] + " " + r["question"] for r in qa_rows] * 3
    model_dir = build_tiny_model(family, tmp_path / f"learning-{family}", corpus, **built)
    rows = synthetic_v2_records(40)  # 60 rows, 20 unanswerable
    files = {
        "train": write_jsonl(tmp_path / "train.jsonl", rows[:48]),
        "test": write_jsonl(tmp_path / "test.jsonl", rows[48:]),
    }
    learning = [*learning, "lora.target_modules=all_linear", "lora.r=16"]
    args = tiny_overrides(model_dir, files, tmp_path / "run", "evaluation.baseline=false", *learning)
    code, out, err = run_cli(capsys, "train", *args, f"generation.max_new_tokens={NO_ANSWER_TOKENS}", "--no-report")
    assert code == 0 and "HasAns F1" in out and "NoAns F1" in out, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["HasAns_total"], metrics["NoAns_total"]) == (8, 4)
    qa = loraqa.load(str(tmp_path / "run" / "adapter"))
    ready = qa._ready  # the model predict answers with, asked for its greedy text alone (no abstention)
    settings = predict_settings(qa._config, version_2=False)
    settings.max_new_tokens = NO_ANSWER_TOKENS  # a causal prompt reserves these: as the run generated
    records = [QARecord(r["id"], r["context"], r["question"]) for r in rows[48:]]
    prompts = [ready.spec.formulation.generation_prompt(r, ready.tokenizer, settings) for r in records]
    decoder_only = FORMULATION[family] == "causal"
    texts = [
        t for t, _, _ in generate_answers(ready.model, ready.tokenizer, prompts, settings, decoder_only=decoder_only)
    ]
    wrote_no_answer = [ready.spec.formulation.is_no_answer(text) for text in texts]
    assert wrote_no_answer == [bool(r.get("is_impossible")) for r in rows[48:]], texts
