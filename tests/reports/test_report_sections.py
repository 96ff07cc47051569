"""Each section of the report, on synthetic run directories, and the files `write_report` leaves."""

from __future__ import annotations

import json
import re

from png_checks import assert_real_plot
from synthetic_runs import write_run

from loraqa.reports import write_report
from loraqa.reports.document import Code, Figure, Paragraph, Table
from loraqa.reports.figures import DPI, WIDE
from loraqa.reports.reading import read_source
from loraqa.reports.sections import (
    build_document,
    decodings_section,
    differing_keys,
    failures_section,
    provenance_section,
    runs_section,
)


def tables(section) -> list[Table]:
    found = []
    for block in section.blocks:
        if isinstance(block, Table):
            found.append(block)
        elif hasattr(block, "blocks"):
            found += tables(block)
    return found


def column(table: Table, name: str) -> list[str]:
    index = table.header.index(name)
    return [row[index] for row in table.rows]


def test_differing_keys_ignore_names_and_count_missing_keys():
    a = {"name": "a", "output_dir": "runs/a", "lora": {"r": 4, "alpha": 8}, "training": {"seed": 1}}
    b = {"name": "b", "output_dir": "runs/b", "lora": {"r": 16, "alpha": 8}, "training": {"seed": 1, "x": 2}}
    assert differing_keys([a, b]) == ["lora.r", "training.x"]
    assert differing_keys([a, a]) == []


def test_runs_table_of_a_comparison(tmp_path):
    write_run(
        tmp_path / "a",
        r=4,
        summary_extra={
            "trainable_params": 166658,
            "total_params": 22732804,
            "peak_memory_mib": 1234.4,
            "peak_memory_kind": "cpu_rss",
        },
    )
    write_run(tmp_path / "b", r=16, baseline=False, summary_extra={"validation": {"f1": 61.25}})
    write_run(tmp_path / "c", r=8, finished=False)
    runs = read_source(tmp_path).runs
    section = runs_section(runs)
    table = tables(section)[0]
    assert "lora.r" in table.header and "lora.lora_alpha" in table.header and "name" not in table.header
    assert column(table, "lora.r") == ["4", "16", "8"]
    assert column(table, "status") == ["finished", "finished", "unfinished (trained, no summary.json)"]
    assert column(table, "trainable params") == ["166,658 of 22.7M (0.73%)", "n/a", "n/a"]
    assert column(table, "baseline EM / F1 / ROUGE-L") == ["10.00 / 20.00 / 19.00", "n/a", "10.00 / 20.00 / 19.00"]
    assert column(table, "adapter EM / F1 / ROUGE-L") == ["40.00 / 59.00 / 58.00", "40.00 / 71.00 / 70.00", "n/a"]
    # recorded validation F1 wins; else the last evaluation in the log, with its step
    assert column(table, "validation F1") == ["50.00 (step 40)", "61.25", "50.00 (step 40)"]
    assert column(table, "train time") == ["12.3 s", "12.3 s", "n/a"]
    # b's summary predates the peak-memory record; c has no summary at all
    assert column(table, "peak memory") == ["1,234 MiB (cpu_rss)", "n/a", "n/a"]
    assert "`lora.r`" in section.blocks[0].text


def test_single_run_shows_its_configuration(tmp_path):
    section = runs_section(read_source(write_run(tmp_path / "a")).runs)
    config = tables(section)[0]
    assert config.header == ["config key", "value"] and ["lora.r", "8"] in config.rows


def test_failures_list_examples_per_category(tmp_path):
    write_run(tmp_path / "a")
    write_run(tmp_path / "b", finished=False)
    section = failures_section(read_source(tmp_path).runs, tmp_path / "files")
    assert isinstance(section.blocks[0], Figure)
    captions = [t.caption for t in tables(section)]
    # in the order of metrics/failures.py
    assert captions == ["empty: 1 question(s)", "partial: 1 question(s)", "wrong span: 1 question(s)"]
    partial = tables(section)[1]
    assert partial.rows == [["Who wrote <b>Roots</b>?", "Alex Haley", "Haley", "67"]]  # golds de-duplicated
    assert tables(section)[0].rows[0][2] == "(empty)"
    b = section.blocks[-1]
    assert b.title == "b" and "No test evaluation" in b.blocks[0].text


def test_decoding_table_only_when_several_decodings(tmp_path):
    write_run(tmp_path / "a", decodings=("greedy", "beam2"))
    write_run(tmp_path / "b")
    section = decodings_section(read_source(tmp_path).runs)
    table = tables(section)[0]
    assert column(table, "evaluation") == ["adapter", "eval/beam2", "eval/greedy"]
    assert column(table, "decoding") == ["greedy (config)", "beam2", "greedy"]
    assert column(table, "run") == ["a", "a", "a"]
    only_one = decodings_section(read_source(tmp_path / "b").runs)
    assert not tables(only_one) and "one decoding only" in only_one.blocks[0].text


def test_provenance_recorded_or_labelled_current(tmp_path):
    recorded = {
        "versions": {"loraqa": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0", "peft": "0.21.2"},
        "git_commit": "abcdef1234567890",
        "command": ["loraqa", "train", "configs/x.yaml", "lora.r=4"],
    }
    write_run(tmp_path / "a", summary_extra=recorded)
    write_run(tmp_path / "b")
    section = provenance_section(read_source(tmp_path).runs)
    table = tables(section)[0]
    assert table.rows[0] == ["a", "0.1.0", "2.13.0", "5.24.0", "0.21.2", "abcdef123456"]
    b = table.rows[1]
    assert b[1] == "0.0.9"  # from the adapter's loraqa.json: recorded, no star
    assert all(v.endswith(" *") for v in b[2:5])
    codes = [block.text for block in section.blocks if isinstance(block, Code)]
    assert codes[0] == "loraqa train configs/x.yaml lora.r=4"
    assert codes[1].startswith("loraqa train ") and codes[1].endswith("b-rerun")
    assert any(isinstance(block, Paragraph) and "not recorded by the run" in block.text for block in section.blocks)


def test_write_report_files_and_figure_sizes(tmp_path):
    write_run(tmp_path / "a", r=4)
    write_run(tmp_path / "b", r=16)
    paths = write_report(tmp_path)
    names = sorted(p.name for p in paths.figures)
    assert names == ["failure_categories.png", "loss_curves.png", "validation_f1.png"]
    wide = (round(WIDE[0] * DPI), round(WIDE[1] * DPI))
    assert_real_plot(tmp_path / "report_files" / "loss_curves.png", wide)
    assert_real_plot(tmp_path / "report_files" / "validation_f1.png", wide)
    assert_real_plot(tmp_path / "report_files" / "failure_categories.png", (wide[0], png_height(tmp_path)))
    html = paths.html.read_text()
    assert html.count('src="data:image/png;base64,') == 3
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing fetched from outside the file
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    markdown = paths.markdown.read_text()
    assert "![Training and validation loss per step, all runs](report_files/loss_curves.png)" in markdown
    assert "Where did the war \\| break out?" in markdown and "<script>" not in markdown
    # a second report replaces the first whole
    (tmp_path / "b" / "train_log.jsonl").unlink()
    (tmp_path / "a" / "train_log.jsonl").unlink()
    again = write_report(tmp_path)
    assert sorted(p.name for p in again.figures) == ["failure_categories.png"]
    assert sorted(p.name for p in (tmp_path / "report_files").iterdir()) == ["failure_categories.png"]
    assert "No training log" in again.markdown.read_text()


def png_height(tmp_path) -> int:
    from png_checks import png_size

    return png_size(tmp_path / "report_files" / "failure_categories.png")[1]


def test_a_run_with_nothing_but_its_config_still_reports(tmp_path):
    run_dir = write_run(tmp_path / "bare", baseline=False, log=False, finished=False)
    document = build_document(read_source(run_dir), tmp_path / "files")
    titles = [s.title for s in document.sections]
    assert titles == [
        "Runs",
        "Training curves",
        "Failure categories",
        "Where it fails: F1 by slice",
        "Confidence and abstention",
        "Decoding strategies",
        "Versions and commands",
    ]
    paths = write_report(run_dir)
    assert paths.figures == [] and "n/a" in paths.markdown.read_text()


def test_a_short_run_with_one_logged_loss_still_draws_its_curve(tmp_path, monkeypatch):
    # A few dozen steps with logging_steps=10 log one or two losses: a line alone would draw nothing.
    import loraqa.reports.figures as figures

    write_run(tmp_path / "short", log=False)
    entry = {"step": 10, "loss": 4.2, "learning_rate": 1e-3, "epoch": 0.1}
    (tmp_path / "short" / "train_log.jsonl").write_text(json.dumps(entry) + "\n")
    drawn = []
    real = figures._figure
    monkeypatch.setattr(figures, "_figure", lambda *a: drawn.append(real(*a)) or drawn[-1])
    write_report(tmp_path)
    curves = [line for line in drawn[0].axes[0].get_lines() if line.get_label() == "short"]
    assert len(curves) == 1 and len(curves[0].get_xdata()) == 1 and curves[0].get_marker() == "o"


def test_twenty_runs_get_twenty_colours():
    from matplotlib.colors import to_hex

    from loraqa.reports.figures import run_color

    assert len({to_hex(run_color(i)) for i in range(20)}) == 20


def test_a_squad_v2_run_plots_validation_f1_against_the_no_answer_threshold(tmp_path):
    run = write_run(tmp_path / "v2")
    curve = [
        {"threshold": t, "f1": 50 + t, "HasAns_f1": 60 - 5 * t, "NoAns_f1": 30 + 8 * t} for t in (-2.0, -1.0, 0.5, 2.0)
    ]
    values = json.loads((run / "metrics.json").read_text())
    values["no_answer_threshold"] = {"value": 0.5, "chosen_on": "validation", "curve": curve}
    (run / "metrics.json").write_text(json.dumps(values))
    paths = write_report(run)
    assert "no_answer_0.png" in [p.name for p in paths.figures]
    assert_real_plot(run / "report_files" / "no_answer_0.png", (round(WIDE[0] * DPI), round(WIDE[1] * DPI)))
    assert "against the no-answer threshold" in paths.markdown.read_text()


def test_no_training_log_says_why(tmp_path):
    from loraqa.reports.sections import curves_section
    from loraqa.runs.record import RunRecord
    from loraqa.runs.summary import RunSummary

    short = RunRecord("short", tmp_path, {"training": {"logging_steps": 10, "max_steps": 3}}, summary=RunSummary())
    epochs = RunRecord("epochs", tmp_path, {"training": {"logging_steps": 500, "max_steps": -1}}, summary=RunSummary())
    notes = [b.text for b in curves_section([short, epochs], tmp_path).blocks if isinstance(b, Paragraph)]
    assert (
        "short (training.logging_steps=10 is above the 3 steps it ran: set training.logging_steps=3 or less)"
        in (notes[0])
    )
    assert "epochs (no step reached training.logging_steps=500" in notes[0]
