"""Sweep definitions: cells in a fixed order, bad arguments as one-line errors, failing trials recorded."""

from __future__ import annotations

import json

import optuna
import pytest
from sweep_helpers import cheap_overrides, sweep_command

from loraqa.cli import main
from loraqa.errors import ConfigError
from loraqa.sweeps.space import grid_cells, parse_grid, parse_space


def test_grid_cells_are_the_product_in_a_fixed_order_with_seeds_last():
    axes = parse_grid(["lora.r=4,8", "lora.target_modules=attention,qv"])
    cells = grid_cells(axes, [42, 43])
    assert len(cells) == 8 and len({c.key for c in cells}) == 8
    assert cells[0].key == "lora.r=4 lora.target_modules=attention seed=42"
    assert cells[1].key == "lora.r=4 lora.target_modules=attention seed=43"
    assert cells[0].overrides() == ["lora.r=4", "lora.target_modules=attention", "training.seed=42"]
    assert cells[0].config_key == cells[1].config_key
    assert cells == grid_cells(parse_grid(["lora.r=4,8", "lora.target_modules=attention,qv"]), [42, 43])


def test_search_space_distributions():
    space = parse_space(
        ["training.learning_rate=loguniform(5e-5,2e-3)", "lora.r=int(2,8)", "lora.target_modules=choice(qv,attention)"]
    )
    assert space["training.learning_rate"] == optuna.distributions.FloatDistribution(5e-5, 2e-3, log=True)
    assert space["lora.r"] == optuna.distributions.IntDistribution(2, 8)
    assert space["lora.target_modules"].choices == ("qv", "attention")
    with pytest.raises(ConfigError, match="loguniform"):
        parse_space(["training.learning_rate=lognormal(1,2)"])


@pytest.mark.parametrize(
    "options, message",
    [
        (["--grid", "lora.rank=4,8"], "'lora.rank': unknown config key"),
        (["--grid", "lora.r="], "has no values"),
        (["--grid", "lora.r=4", "--search", "tpe"], "either --grid"),
        (["--grid", "lora.r=4,8", "--prune", "median"], "training.eval_strategy"),
        (["--grid", "lora.r=4", "--metric", "bleu"], "--metric"),
        (["--grid", "lora.r=4", "--prune-warmup", "1.5"], "--prune-warmup: must be in [0, 1)"),
        # every trial's config is checked before any worker starts: a value each trial would fail on
        (
            ["--grid", "training.per_device_train_batch_size=4,x"],
            "'training.per_device_train_batch_size': expected "
            "an integer, got 'x' (in the sweep's trials with training.per_device_train_batch_size=x)",
        ),
        (["--grid", "lora.r=4,0", "lora.lora_alpha=8,16"], "lora.r=0 lora.lora_alpha=8"),
        (["--grid", "training.learning_rate=1e-4,1e30"], "'training.learning_rate': must be in (0, 1]"),
        (
            ["--search", "random", "--trials", "2", "--space", "training.learning_rate=loguniform(1e-4,10)"],
            "(in the sweep's trials with training.learning_rate=10",
        ),
        (
            ["--search", "random", "--trials", "2", "--space", "training.lr_scheduler_type=choice(linear,cosinus)"],
            "unknown scheduler 'cosinus'",
        ),
        (["training.learning_rate=1e30", "--grid", "lora.r=4"], "'training.learning_rate': must be in (0, 1]"),
    ],
)
def test_bad_sweep_arguments_are_one_line_errors(options, message, tiny_model_dir, qa_files, tmp_path, capsys):
    args = sweep_command(cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path), tmp_path / "s", "bad", *options)
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("loraqa: error:")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err
    assert not (tmp_path / "s").exists()  # nothing created before the arguments are known good


def test_a_failing_cell_is_recorded_with_its_error_and_the_sweep_goes_on(tiny_model_dir, qa_files, tmp_path, capsys):
    sweep_dir = tmp_path / "s"
    args = sweep_command(
        cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path), sweep_dir, "mixed", "--grid", "lora.r=4,64"
    )  # 64: more than the 32-wide model can use, found at load
    assert main(args) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="mixed", storage=f"sqlite:///{sweep_dir / 'study.db'}")
    states = {t.user_attrs["cell"]: t for t in study.trials}
    assert states["lora.r=4 seed=42"].state.name == "COMPLETE"
    failed = states["lora.r=64 seed=42"]
    assert failed.state.name == "FAIL" and "lora.r" in failed.user_attrs["error"]
    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert summary["failed"][0]["cell"] == "lora.r=64 seed=42" and "failed: lora.r=64 seed=42" in out

    assert main(args) == 0  # the same command again: nothing left to train, nothing re-run
    assert len(optuna.load_study(study_name="mixed", storage=f"sqlite:///{sweep_dir / 'study.db'}").trials) == 2
    assert main([*args[:-1], "lora.r=4,16"]) == 2  # another grid under the same name is refused
    assert "different grid" in capsys.readouterr().err


def test_a_sweep_in_which_no_trial_completed_exits_2(tiny_model_dir, qa_files, tmp_path, capsys):
    """Every trial failing a check no config can see (ranks the 32-wide model cannot use) is a
    failed sweep: the summary still printed, then one line and exit status 2, not 0."""
    sweep_dir = tmp_path / "s"
    args = sweep_command(
        cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path), sweep_dir, "none", "--grid", "lora.r=64,128"
    )
    assert main(args) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("loraqa: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "no trial of sweep none completed (2 fail)" in lines[0] and "'lora.r': 64 is more than" in lines[0]
    assert "failed: lora.r=64 seed=42" in out and (sweep_dir / "sweep.json").is_file()
