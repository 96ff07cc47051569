"""The printed results table: aligned whatever the labels, and token accuracy labelled with its scale."""

from __future__ import annotations

from loraqa.inference.evaluate import format_table

ROW = {"exact_match": 12.5, "f1": 30.25, "rougeL": 28.0, "count": 8, "seconds": 3.2}


def columns_start(line: str, text: str) -> int:
    return line.index(text)


def test_long_labels_keep_the_columns_aligned():
    long_label = "/a/very/long/path/to/some/model-directory + adapter [topp0.95]"
    table = format_table([("short", ROW), (long_label, {**ROW, "exact_match": 100.0, "count": 1000})])
    header, rule, first, second = table.splitlines()
    assert len(rule) == len(header) and len(first) == len(second) == len(header)
    assert header.index("EM") + 2 == first.index("12.50") + 5 == second.index("100.00") + 6  # right-aligned
    assert second.startswith(long_label + " ")


def test_token_accuracy_is_printed_with_its_scale_and_caveat():
    table = format_table([("gen", {**ROW, "token_accuracy": 93.0}), ("span", ROW)])
    lines = table.splitlines()
    assert "tok-acc" in lines[0] and "93.00" in lines[2] and lines[3].split()[4] == "-"
    assert "0-100" in lines[-1] and "teacher-forced" in lines[-1]
    assert "tok-acc" not in format_table([("span", ROW)])


def test_the_f1_interval_has_its_own_column_and_a_note_saying_what_it_is():
    with_ci = {**ROW, "f1_ci": {"mean": 30.25, "low": 26.5, "high": 34.0, "n": 8}}
    table = format_table([("adapter", with_ci), ("old run", ROW)])
    header, rule, first, second, note = table.splitlines()
    assert "F1 95% CI" in header and "[26.5, 34.0]" in first and second.split()[4] == "-"
    assert len(first) == len(second) == len(header)
    assert "bootstrap" in note


def test_squad_v2_rows_print_has_answer_and_no_answer_f1_in_their_own_columns():
    v2 = {**ROW, "HasAns_f1": 41.5, "NoAns_f1": 77.25, "HasAns_total": 5, "NoAns_total": 3}
    table = format_table([("adapter", v2), ("v1", ROW)])
    header, rule, first, second, note = table.splitlines()
    assert header.split()[3:6] == ["HasAns", "F1", "NoAns"]
    assert first.split()[3:5] == ["41.50", "77.25"] and second.split()[3:5] == ["-", "-"]
    assert len(first) == len(second) == len(header) and "NoAns" in note
    assert "HasAns" not in format_table([("v1 run", ROW)])
