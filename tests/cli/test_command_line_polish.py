"""Small things a new user hits (#28 point 6): one override grammar, --version, the shipped configs and
comparison sets by name, an editable copy of a config, types with their allowed values, help texts."""

from __future__ import annotations

import pytest
from run_helpers import one_line_error, run_cli

from loraqa import __version__
from loraqa.cli import main
from loraqa.config.loader import load_config
from loraqa.config.shipped import compare_configs, compare_sets, shipped_configs


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"loraqa {__version__}"


def test_compare_takes_overrides_after_its_flags_and_sets_by_name(capsys):
    # the override is read (and refused by its own check), not an argparse "unrecognized arguments";
    # the set name and config names resolve to the shipped files from any directory
    for items in (["offline"], ["offline-minilm-l6-r4", "offline-minilm-l6-r16"]):
        code, _, err = run_cli(capsys, "compare", *items, "--name", "x", "lora.r=0")
        assert code == 2 and "config key 'lora.r': the rank must be at least 1" in one_line_error(err)


def test_configs_lists_whole_sentences_and_the_comparison_sets(capsys):
    code, out, _ = run_cli(capsys, "configs")
    assert code == 0
    for name in [*shipped_configs(), *compare_sets()]:
        assert f"  {name} " in out
    assert "offline-minilm-l6-r4" in out and "(q_lin..out_lin) plus the" in out  # the sentence goes on


@pytest.mark.parametrize("name", ["minilm-l6-squad", "offline-smollm2-135m-r16"])
def test_configs_show_prints_an_editable_copy(name, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "configs", "--show", name)
    assert code == 0 and out.startswith("# loraqa ")  # its comments too
    copy = tmp_path / "my.yaml"
    copy.write_text(out)
    assert load_config(str(copy)) == load_config(name)
    code, _, err = run_cli(capsys, "configs", "--show", "minilm-l6-squd")
    assert code == 2 and "did you mean 'minilm-l6-squad'?" in one_line_error(err)


def test_config_reference_names_the_allowed_values(capsys):
    code, out, _ = run_cli(capsys, "config")
    assert code == 0 and "Literal" not in out and "Union" not in out
    assert "training.precision: 'auto' | 'fp32' | 'bf16' | 'fp16' = 'auto'" in out
    assert "data.train_samples: int | None = None" in out


@pytest.mark.parametrize("command", ["predict", "merge", "configs"])
def test_help_has_a_description(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    usage, _, rest = capsys.readouterr().out.partition("\n\n")
    assert not rest.startswith(("positional arguments", "options")), rest[:200]


def test_every_comparison_config_names_its_set_command():
    for name, path in compare_configs().items():
        set_name = name.split("-", 1)[0]
        assert path.read_text().splitlines()[0] == f"# loraqa compare {set_name} --name {set_name}"


def test_the_size_guard_names_what_makes_the_share(tiny_model_dir, qa_files, tmp_path, capsys):
    from run_helpers import tiny_overrides

    overrides = tiny_overrides(
        tiny_model_dir("gpt2"), qa_files, tmp_path / "run", "lora.allow_large_trainable_share=false"
    )
    code, _, err = run_cli(capsys, "train", "minilm-l6-squad", *overrides)  # LoRA on attention + MLP: 23%
    line = one_line_error(err)
    assert code == 2 and "LoRA layers" in line and "lower lora.r" in line and "modules_to_save" not in line


def test_a_sweep_ends_with_its_report(tiny_model_dir, qa_files, tmp_path, capsys):
    from run_helpers import tiny_overrides

    overrides = tiny_overrides(
        tiny_model_dir("gpt2"),
        qa_files,
        tmp_path / "unused",
        "training.max_steps=1",
        "data.validation_samples=2",
        "data.test_samples=2",
    )
    sweep_dir = tmp_path / "sweep"
    code, out, err = run_cli(
        capsys, "sweep", *overrides, "--name", "s", "--dir", str(sweep_dir), "--grid", "lora.r=2,4"
    )
    assert code == 0, err
    assert f"report written to {sweep_dir / 'report.html'}" in out and (sweep_dir / "report.md").is_file()
