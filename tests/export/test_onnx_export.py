"""`loraqa export --format onnx`: the export answers as `loraqa predict` does, through loraqa and through plain
onnxruntime called as its README says; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from run_helpers import adapter_dependent_overrides, one_line_error, run_cli, tiny_overrides

from loraqa.data.sources import load_records

MAX_NEW_TOKENS = 4  # tiny_overrides' generation.max_new_tokens


def _train(family: str, tiny_model_dir, qa_files, out: Path, capsys) -> Path:
    from loraqa.cli import main

    args = tiny_overrides(tiny_model_dir(family), qa_files, out, *adapter_dependent_overrides(family))
    assert main(["train", *args, "--no-report"]) == 0
    capsys.readouterr()  # training's log lines
    return out / "adapter"


def _predict(capsys, questions: Path, *model: str) -> dict[str, str]:
    code, out, err = run_cli(
        capsys,
        "predict",
        *model,
        "--input",
        str(questions),
        "training.device=cpu",
        f"generation.max_new_tokens={MAX_NEW_TOKENS}",
    )
    assert code == 0, err
    return {row["id"]: row["answer"] for row in map(json.loads, out.splitlines())}


@pytest.fixture(scope="module")
def questions(qa_files, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("questions") / "q.jsonl"
    rows = [
        {"id": r.id, "question": r.question, "context": r.context} for r in load_records(str(qa_files["test"])).records
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("family", ["bert", "distilbert", "t5", "gpt2", "llama"])
def test_onnx_export_answers_as_loraqa_predict(family, tiny_model_dir, qa_files, questions, tmp_path, capsys):
    adapter = _train(family, tiny_model_dir, qa_files, tmp_path / "run", capsys)
    expected = _predict(capsys, questions, "--adapter", str(adapter))
    assert any(expected.values()), "an untrained-looking adapter would make this test trivial"
    code, _, err = run_cli(
        capsys, "export", "--adapter", str(adapter), "--format", "onnx", "--output", str(tmp_path / "onnx")
    )
    assert code == 0, err
    assert _predict(capsys, questions, "--model", str(tmp_path / "onnx")) == expected
    code, _, err = run_cli(
        capsys,
        "eval",
        "--model",
        str(tmp_path / "onnx"),
        f"data.test={qa_files['test']}",
        "training.device=cpu",
        f"generation.max_new_tokens={MAX_NEW_TOKENS}",
        "--output",
        str(tmp_path / "eval"),
    )
    assert code == 0, err
    rows = map(json.loads, (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines())
    assert {row["id"]: row["prediction"] for row in rows} == expected
    if family in ("bert", "distilbert"):
        assert _plain_onnxruntime_extractive(tmp_path / "onnx", questions) == expected
    else:
        assert _plain_onnxruntime_greedy(tmp_path / "onnx", questions, family) == expected


def _plain_onnxruntime_extractive(directory: Path, questions: Path) -> dict[str, str]:
    """The README's recipe (the best start + end pair over context tokens); the tiny contexts fit one window."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(directory))
    session = ort.InferenceSession(str(directory / "model.onnx"))
    names = {i.name for i in session.get_inputs()}
    answers = {}
    for row in map(json.loads, questions.read_text().splitlines()):
        enc = tok(row["question"], row["context"], return_tensors="np", return_offsets_mapping=True)
        offsets = enc.pop("offset_mapping")[0]
        start, end = session.run(None, {k: v for k, v in enc.items() if k in names})
        context_tokens = np.array(enc.sequence_ids(0)) == 1
        start, end = np.where(context_tokens, start[0], -np.inf), np.where(context_tokens, end[0], -np.inf)
        scores = start[:, None] + end[None, :]  # the best pair with s <= e < s + max_answer_length (30)
        scores[np.tril_indices(len(start), -1)] = -np.inf
        scores[np.triu_indices(len(start), 30)] = -np.inf
        s, e = np.unravel_index(int(scores.argmax()), scores.shape)
        answers[row["id"]] = row["context"][offsets[s][0] : offsets[e][1]]
    return answers


def _plain_onnxruntime_greedy(directory: Path, questions: Path, family: str) -> dict[str, str]:
    """The README's greedy loop, with the prompt the adapter's README documents (as tests/interop builds it)."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(directory))
    template = json.loads((directory / "loraqa_export.json").read_text())["model_config"]["prompt_template"]
    sessions = [ort.InferenceSession(str(p)) for p in sorted(directory.glob("*.onnx"))]  # decoder, encoder
    answers = {}
    for row in map(json.loads, questions.read_text().splitlines()):
        if family == "t5":
            enc = tok(f"question: {row['question']} context: {row['context']}", return_tensors="np")
            decoder, encoder = sessions
            (hidden,) = encoder.run(None, {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
            out = [json.loads((directory / "config.json").read_text())["decoder_start_token_id"]]
            for _ in range(MAX_NEW_TOKENS):
                (logits,) = decoder.run(
                    None,
                    {
                        "decoder_input_ids": np.array([out]),
                        "encoder_hidden_states": hidden,
                        "attention_mask": enc["attention_mask"],
                    },
                )
                token = int(logits[0, -1].argmax())
                if token == tok.eos_token_id:
                    break
                out.append(token)
            new = out[1:]
        else:
            body = template.format(context=row["context"], question=row["question"])
            if tok.chat_template:
                messages = [{"role": "user", "content": body}]
                prompt = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
            else:
                prompt = tok(body + "\nAnswer:")["input_ids"]
            ids = list(prompt)
            for _ in range(MAX_NEW_TOKENS):
                x = np.array([ids])
                (logits,) = sessions[0].run(
                    None,
                    {"input_ids": x, "attention_mask": np.ones_like(x), "position_ids": np.arange(x.shape[1])[None]},
                )
                token = int(logits[0, -1].argmax())
                if token == tok.eos_token_id or "\n" in tok.decode([token]):
                    break
                ids.append(token)
            new = ids[len(prompt) :]
        answers[row["id"]] = tok.decode(new, skip_special_tokens=True).strip().split("\n", 1)[0].strip()
    return answers


def test_an_existing_output_is_never_overwritten_without_overwrite(tmp_path, capsys):
    # Checked before the adapter is read: no model needed to see the refusal.
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    code, _, err = run_cli(
        capsys, "export", "--adapter", str(tmp_path / "adapter"), "--format", "onnx", "--output", str(target)
    )
    assert code == 2 and "is not empty; use --overwrite" in one_line_error(err)
    assert (target / "keep.txt").read_text() == "mine"
