"""Defaults that do not fit the model are fitted to it, and said; values the user set are refused.
The tiny BERT has 256 positions, under the default model.max_seq_length (384)."""

from __future__ import annotations

import yaml
from run_helpers import one_line_error, run_cli, tiny_overrides

from loraqa.config.loader import load_config


def without_window(overrides: list[str]) -> list[str]:
    return [item for item in overrides if not item.startswith(("model.max_seq_length=", "model.doc_stride="))]


def test_default_window_is_capped_to_the_model_and_said(tiny_model_dir, qa_files, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "train",
        *without_window(tiny_overrides(tiny_model_dir("bert"), qa_files, out)),
        "training.max_steps=1",
        "--no-report",
    )
    assert code == 0, err
    notes = [line for line in err.splitlines() if "reads at most" in line]
    assert notes == [
        f"loraqa: note: '{tiny_model_dir('bert')}' reads at most 256 tokens: "
        "model.max_seq_length 384 -> 256 (set them to choose)"
    ]
    saved = yaml.safe_load((out / "config.yaml").read_text())["model"]
    assert (saved["max_seq_length"], saved["doc_stride"]) == (256, 128)  # what ran is what the run records


def test_a_window_the_user_set_is_still_refused(tiny_model_dir, qa_files, tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "train", *tiny_overrides(tiny_model_dir("bert"), qa_files, tmp_path / "run"), "model.max_seq_length=384"
    )
    assert code == 2 and "max_position_embeddings = 256" in one_line_error(err)


def test_predict_with_a_256_position_model_and_no_window_set(tiny_model_dir, capsys):
    code, out, err = run_cli(
        capsys,
        "predict",
        "--model",
        str(tiny_model_dir("bert")),
        "--device",
        "cpu",
        "--question",
        "Who wrote it?",
        "--context",
        "Ada wrote it in 1843.",
    )
    assert code == 0, err
    assert "reads at most 256 tokens" in err and out.strip()


def test_the_default_stride_follows_a_shorter_window_the_user_set():
    assert load_config(None, ["model.max_seq_length=96"]).model.doc_stride == 32
    assert load_config(None, ["model.max_seq_length=96", "model.doc_stride=50"]).model.doc_stride == 50
    assert load_config(None, []).model.doc_stride == 128
