"""Each sweep trial records the `loraqa train` command that reproduces it; pasted back through the
CLI it retrains the same configuration on the same questions into a new directory, and the sweep
summary and report show the best configuration's command."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml
from safetensors.torch import load_file
from sweep_helpers import cheap_overrides, sweep_command

from loraqa.cli import main
from loraqa.reports.document import Code
from loraqa.reports.reading import read_source
from loraqa.reports.sections import build_document


def _saved_config(run_dir: Path) -> dict:
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    config.pop("output_dir")
    return config


def _scores(metrics: dict) -> dict:
    """The metrics without their timings (seconds, questions per second), which differ per run."""
    return {k: v for k, v in metrics.items() if "second" not in k}


def test_each_trial_records_a_train_command_that_reproduces_it_and_the_report_shows_the_best(
    tiny_model_dir, qa_files, tmp_path, capsys
):
    home = tmp_path / "my sweeps"  # a space in every path: the command must quote it
    home.mkdir()
    config = home / "sweep config.yaml"
    config.write_text("lora:\n  lora_alpha: 8\ntraining:\n  seed: 7\n", encoding="utf-8")
    sweep_dir = home / "grid"
    argv = sweep_command(
        cheap_overrides(tiny_model_dir("bert"), qa_files, tmp_path), sweep_dir, "cmd", "--grid", "lora.r=2,4"
    )
    assert main([argv[0], str(config), *argv[1:]]) == 0
    out = capsys.readouterr().out

    trial_dirs = sorted(p for p in sweep_dir.iterdir() if (p / "sweep_trial.json").is_file())
    assert [p.name for p in trial_dirs] == ["r=2_seed=7", "r=4_seed=7"]
    assert (sweep_dir / "report.html").is_file()  # the sweep's report, written at its end
    for trial_dir in trial_dirs:  # (a) recorded where `loraqa train` records its own, and in sweep_trial.json
        recorded = json.loads((trial_dir / "summary.json").read_text())["command"]
        assert recorded[:3] == ["loraqa", "train", str(config)]
        assert f"lora.r={trial_dir.name[2]}" in recorded and "training.seed=7" in recorded
        assert recorded.count(next(o for o in recorded if o.startswith("output_dir="))) == 1
        assert f"output_dir={home / 'grid-rerun' / trial_dir.name}" in recorded  # beside the sweep, not in it
        assert json.loads((trial_dir / "sweep_trial.json").read_text())["command"] == shlex.join(recorded)

    summary = json.loads((sweep_dir / "sweep.json").read_text())
    best_dir = Path(summary["best"]["best_run_dir"])
    command = summary["best"]["command"]
    assert command == shlex.join(json.loads((best_dir / "summary.json").read_text())["command"])
    assert f"reproduce it as an ordinary run: {command}" in out

    # (b) pasted into a shell (shlex.split) and run, it retrains the trial: same config, questions, weights
    pasted = shlex.split(command)
    assert pasted[0] == "loraqa" and main(pasted[1:]) == 0
    rerun_dir = home / "grid-rerun" / best_dir.name
    assert _saved_config(rerun_dir) == _saved_config(best_dir)
    trial, rerun = (json.loads((d / "summary.json").read_text()) for d in (best_dir, rerun_dir))
    assert "f1" in _scores(trial["validation"])
    assert rerun["questions"] == trial["questions"]  # --validation: train did not keep the validation questions
    assert _scores(rerun["validation"]) == _scores(trial["validation"])
    assert _scores(rerun["adapter"]) == _scores(trial["adapter"])
    weights = [load_file(d / "adapter" / "adapter_model.safetensors") for d in (best_dir, rerun_dir)]
    assert weights[0].keys() == weights[1].keys() and all(weights[0][k].equal(weights[1][k]) for k in weights[0])
    assert main(pasted[1:]) == 2  # a second paste refuses to overwrite the rerun
    capsys.readouterr()

    # (c) the report's best configuration and provenance show the recorded command
    document = build_document(read_source(sweep_dir), tmp_path / "files")
    best = next(s for s in document.sections if s.title == "Best configuration")
    assert command in [b.text for b in best.blocks if isinstance(b, Code)]
    assert main(["report", str(sweep_dir)]) == 0
    report = (sweep_dir / "report.md").read_text(encoding="utf-8")
    assert "command not recorded" not in report.lower() and command in report
    assert f"{best_dir.name}: the command that reproduces it" in report
