"""`loraqa export --format gguf / gguf-lora`: llama.cpp (llama-cpp-python) loads what loraqa writes and
answers greedily as `loraqa predict` does, from the same prompt tokens, which llama.cpp's own tokenizer
also produces from the prompt text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_helpers import one_line_error, run_cli, tiny_overrides

from loraqa.config.loader import load_config
from loraqa.data.sources import load_records
from loraqa.device import plan_device
from loraqa.formulations.generation import stop_token_ids
from loraqa.inference.evaluate import predict_settings
from loraqa.inference.ready import load_ready_model, model_config_for_adapter

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python comes with the export extra")

MAX_NEW_TOKENS = 4  # tiny_overrides' generation.max_new_tokens


@pytest.fixture(scope="module")
def llama_adapter(tiny_model_dir, qa_files, tmp_path_factory) -> Path:
    from loraqa.cli import main

    out = tmp_path_factory.mktemp("llama") / "run"
    args = tiny_overrides(
        tiny_model_dir("llama"),
        qa_files,
        out,
        "evaluation.baseline=false",
        "training.max_steps=12",
        "training.learning_rate=0.1",
        "model.max_seq_length=256",
        "model.doc_stride=64",
    )
    assert main(["train", *args, "--no-report"]) == 0
    return out / "adapter"


def _loraqa_answers(adapter: Path, qa_files):
    config = load_config(None, ["training.device=cpu", f"generation.max_new_tokens={MAX_NEW_TOKENS}"])
    ready = load_ready_model(
        model_config_for_adapter(adapter, config.model), plan_device("cpu", "auto", "llama"), str(adapter)
    )
    records = load_records(str(qa_files["test"])).records
    settings = predict_settings(config, version_2=False)
    settings.with_loss = False
    answers = {
        p.id: p.text
        for p in ready.spec.formulation.predict(ready.model, ready.tokenizer, records, settings).predictions
    }
    return ready, records, answers


def _llama_cpp_answers(llm, ready, records) -> dict[str, str]:
    """Greedy decoding in llama.cpp from loraqa's prompt tokens, stopping where loraqa stops."""
    stops = set(stop_token_ids(ready.tokenizer, True))
    answers = {}
    for record in records:
        ids = ready.spec.formulation.prompt_ids(record, ready.tokenizer, reserve=MAX_NEW_TOKENS)
        text = ready.tokenizer.decode(ids, skip_special_tokens=False)
        assert (
            llm.tokenize(
                text.encode(), add_bos=llm.metadata.get("tokenizer.ggml.add_bos_token") == "true", special=True
            )
            == ids
        )
        llm.reset()
        new = []
        for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
            if token in stops or len(new) >= MAX_NEW_TOKENS:
                break
            new.append(token)
        answers[record.id] = ready.tokenizer.decode(new, skip_special_tokens=True).strip().split("\n", 1)[0].strip()
    return answers


def test_gguf_export_answers_as_loraqa_in_llama_cpp(llama_adapter, qa_files, tmp_path, capsys):
    ready, records, expected = _loraqa_answers(llama_adapter, qa_files)
    assert any(expected.values()), "an adapter that says nothing would make this test trivial"
    code, _, err = run_cli(
        capsys,
        "export",
        "--adapter",
        str(llama_adapter),
        "--format",
        "gguf",
        "--gguf-type",
        "f32",
        "--output",
        str(tmp_path / "gguf"),
    )
    assert code == 0, err
    llm = llama_cpp.Llama(str(tmp_path / "gguf" / "model.gguf"), n_ctx=512, verbose=False)
    assert _llama_cpp_answers(llm, ready, records) == expected
    modelfile = (tmp_path / "gguf" / "Modelfile").read_text()
    assert "FROM ./model.gguf" in modelfile and "{{ .Prompt }}" in modelfile and 'stop "\\n"' in modelfile


def test_gguf_lora_on_the_base_gguf_answers_as_loraqa(llama_adapter, qa_files, tmp_path, capsys):
    from loraqa.export.gguf_model import write_gguf

    ready, records, expected = _loraqa_answers(llama_adapter, qa_files)
    code, _, err = run_cli(
        capsys, "export", "--adapter", str(llama_adapter), "--format", "gguf-lora", "--output", str(tmp_path / "lora")
    )
    assert code == 0, err
    base = load_ready_model(
        dataclasses_replace_name(
            ready.model_config,
            json.loads((llama_adapter / "adapter_config.json").read_text())["base_model_name_or_path"],
        ),
        plan_device("cpu", "fp32", "llama"),
        None,
        full_precision=True,
    )
    write_gguf(base, tmp_path / "base", "f32")
    llm = llama_cpp.Llama(
        str(tmp_path / "base" / "model.gguf"),
        lora_path=str(tmp_path / "lora" / "adapter.gguf"),
        n_ctx=512,
        verbose=False,
    )
    assert _llama_cpp_answers(llm, ready, records) == expected


def dataclasses_replace_name(model_config, name: str):
    import dataclasses

    return dataclasses.replace(model_config, name=name)


def test_gguf_of_a_non_llama_model_is_one_line_naming_what_is_supported(tiny_model_dir, qa_files, tmp_path, capsys):
    from loraqa.cli import main

    args = tiny_overrides(
        tiny_model_dir("gpt2"), qa_files, tmp_path / "run", "evaluation.baseline=false", "training.max_steps=1"
    )
    assert main(["train", *args, "--no-report"]) == 0
    capsys.readouterr()
    for fmt in ("gguf", "gguf-lora"):
        code, _, err = run_cli(
            capsys,
            "export",
            "--adapter",
            str(tmp_path / "run" / "adapter"),
            "--format",
            fmt,
            "--output",
            str(tmp_path / fmt),
        )
        line = one_line_error(err)
        assert code == 2 and "supports Llama-family models" in line and "not gpt2" in line
        assert not (tmp_path / fmt).exists()
