"""File-level problems: always errors naming the file, whatever skip_invalid says."""

from __future__ import annotations

import gzip
import json

import pytest
from squad_builders import load_error, load_ok, qa, squad, write

from loraqa.data import load_records

BOTH = pytest.mark.parametrize("skip_invalid", [False, True])


@BOTH
def test_missing_file(tmp_path, skip_invalid):
    err = load_error(tmp_path / "nope.json", skip_invalid=skip_invalid)
    assert err.path == str(tmp_path / "nope.json") and err.record is None and "file not found" in err.problem


def test_directory_is_not_a_file(tmp_path):
    (tmp_path / "dir.json").mkdir()
    assert "is a directory" in load_error(tmp_path / "dir.json").problem


@pytest.mark.parametrize("name", ["data.txt", "data.parquet", "data", "squad-v1.1:tran"])
def test_unknown_kind_of_source_lists_the_accepted_ones(tmp_path, name):
    err = load_error(tmp_path / name)
    for accepted in (".json", ".json.gz", ".jsonl", ".jsonl.gz", ".csv", "squad-v1.1:train", "squad-v1.1:dev"):
        assert accepted in err.problem
    assert "hub:NAME[:SPLIT]" in err.problem
    assert name in str(err)


@BOTH
@pytest.mark.parametrize("content", [b"", b"  \n\t\n"], ids=["empty", "whitespace"])
@pytest.mark.parametrize("name", ["x.json", "x.jsonl", "x.csv", "x.json.gz"])
def test_empty_file(tmp_path, content, name, skip_invalid):
    err = load_error(write(tmp_path / name, content), skip_invalid=skip_invalid)
    assert err.path == str(tmp_path / name) and "the file is empty" in err.problem


@BOTH
def test_file_with_zero_records(tmp_path, skip_invalid):
    err = load_error(write(tmp_path / "x.json", {"version": "1.1", "data": []}), skip_invalid=skip_invalid)
    assert err.record is None and err.problem == "no usable records"


def test_file_whose_records_are_all_invalid(tmp_path):
    path = write(tmp_path / "x.json", squad(qa("a", question=""), qa("b", answers=[("nope", 0)])))
    err = load_error(path, skip_invalid=True)
    assert err.record is None and "no usable records" in err.problem
    assert "1 answer_mismatch, 1 empty_question" in err.problem


@BOTH
@pytest.mark.parametrize("name", ["x.json", "x.jsonl", "x.csv", "x.json.gz"])
def test_not_utf8(tmp_path, name, skip_invalid):
    err = load_error(write(tmp_path / name, b'{"data": "caf\xe9"}\n'), skip_invalid=skip_invalid)
    assert err.path.endswith(name) and "not valid UTF-8: byte 0xe9 at offset 13 (line 1)" in err.problem


def test_gzip_file_without_gz_suffix_gets_a_hint(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(gzip.compress(b'{"data": []}'))
    assert "looks gzip-compressed" in load_error(path).problem


@pytest.mark.parametrize(
    "content", [b"not gzip at all", gzip.compress(b'{"data": []}')[:-9]], ids=["garbage", "truncated"]
)
def test_broken_gzip(tmp_path, content):
    path = tmp_path / "x.json.gz"
    path.write_bytes(content)
    assert "not a valid gzip file" in load_error(path).problem


@BOTH
def test_truncated_json_gives_the_position(tmp_path, skip_invalid):
    text = '{"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "abc", "qas": ['
    err = load_error(write(tmp_path / "x.json", text), skip_invalid=skip_invalid)
    assert err.record is None
    assert f"invalid JSON at line 1 column {len(text) + 1} (char {len(text)})" in err.problem


def test_invalid_json_on_a_later_line(tmp_path):
    err = load_error(write(tmp_path / "x.json", '{\n  "data": [\n    oops\n  ]\n}'))
    assert "invalid JSON at line 3 column 5" in err.problem


def test_json_lines_in_a_json_file_gets_a_hint(tmp_path):
    err = load_error(write(tmp_path / "x.json", '{"id": 1}\n{"id": 2}\n'))
    assert "Extra data" in err.problem and "*.jsonl" in err.problem


@pytest.mark.parametrize(
    "root, problem",
    [
        ([], "must be an object with a 'data' list, not a list"),
        ({"version": "1.1"}, "no 'data' list"),
        ({"data": {"title": "T"}}, "'data' must be a list of articles, not an object"),
    ],
)
def test_document_without_data_list(tmp_path, root, problem):
    err = load_error(write(tmp_path / "x.json", root), skip_invalid=True)
    assert err.record is None and problem in err.problem


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = write(tmp_path / "bom.json", "\ufeff" + json.dumps(squad()))
    assert len(load_ok(path).records) == 1


def test_suffix_is_case_insensitive_and_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / "DEV.JSON", squad())
    assert len(load_records("~/DEV.JSON").records) == 1


def test_bad_options_are_programming_errors():
    with pytest.raises(ValueError, match="version_2"):
        load_records("squad-v1.1:dev", version_2="yes")
    with pytest.raises(ValueError, match="max_context_chars"):
        load_records("squad-v1.1:dev", max_context_chars=0)


def test_unreadable_names_are_data_errors(tmp_path):
    assert "cannot be read (File name too long)" in load_error(tmp_path / ("x" * 300 + ".json")).problem
    load_error(str(tmp_path / "nul\0.json"), folder=tmp_path)  # a DataError, whichever words


def test_path_objects_are_accepted(tmp_path):
    path = write(tmp_path / "x.json", squad())
    assert load_records(path).source == str(path)


# A key given twice: JSON parsers keep the last value silently, so the file would mean something
# its reader never saw (issue 25, point 10). Refused, naming the key (and the line, in JSON Lines).
CONTEXT_ONE = "Ada founded Avalon."
TWICE = {
    "squad.json": (
        '{"data": [{"title": "t", "paragraphs": [{"context": "CONTEXT", "context": "x", "qas": []}]}]}',
        None,
    ),
    "rows.jsonl": (
        '{"id": "a", "question": "Who?", "context": "CONTEXT", "answers": {"text": ["Ada"], '
        '"answer_start": [0]}, "question": "Where?"}\n',
        "line 1",
    ),
    "rows.csv": (
        'id,question,context,answers\na,Who?,CONTEXT,"[{""text"": ""Ada"", ""answer_start"": 0, '
        '""text"": ""Avalon""}]"\n',
        "a",
    ),
}
TWICE = {name: (text.replace("CONTEXT", CONTEXT_ONE), where) for name, (text, where) in TWICE.items()}


@BOTH
@pytest.mark.parametrize("name", list(TWICE))
def test_a_key_given_twice_is_refused_naming_it(tmp_path, name, skip_invalid):
    text, record = TWICE[name]
    err = load_error(write(tmp_path / name, text), skip_invalid=skip_invalid and record is None)
    assert "is given twice" in err.problem and err.path == str(tmp_path / name)
    assert {"squad.json": "'context'", "rows.jsonl": "'question'", "rows.csv": "'text'"}[name] in err.problem
    if record:
        assert err.record == record


def test_devices_fifos_and_oversized_files_are_refused_unread(tmp_path, monkeypatch):
    import os

    import loraqa.data.reading as reading

    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")  # reading it would never end
    os.mkfifo(tmp_path / "fifo.jsonl")  # reading it would block forever
    assert "not a regular file" in load_error(tmp_path / "zero.jsonl").problem
    assert "not a regular file" in load_error(tmp_path / "fifo.jsonl").problem
    monkeypatch.setattr(reading, "MAX_DATA_FILE_BYTES", 1000)
    big = write(tmp_path / "big.jsonl", json.dumps(qa()) * 40)
    assert "over the 0 MiB limit" in load_error(big).problem
    # A gzip bomb: a small file whose contents exceed the limit is refused before it all is unpacked.
    bomb = write(tmp_path / "bomb.jsonl.gz", b" " * 100_000)
    assert bomb.stat().st_size < 1000 and "decompresses to over the" in load_error(bomb).problem
