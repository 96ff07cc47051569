"""`input_file_problem`: devices, FIFOs, directories and oversized files are refused without opening them."""

from __future__ import annotations

import os

from loraqa.input_files import input_file_problem


def test_a_regular_file_within_the_limit_is_accepted_also_through_a_link(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("{}")
    (tmp_path / "link.json").symlink_to(target)
    assert input_file_problem(target, 10) is None
    assert input_file_problem(tmp_path / "link.json", 10) is None


def test_what_is_not_a_readable_regular_file_is_named(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b"x" * 11)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would block: the check must not
    assert "over the" in input_file_problem(big, 10)
    assert "directory" in input_file_problem(tmp_path, 10)
    assert "not a regular file" in input_file_problem("/dev/zero", 10)
    assert "not a regular file" in input_file_problem(fifo, 10)
    assert "not found" in input_file_problem(tmp_path / "missing", 10)
    assert "not found" in input_file_problem(big / "below", 10)
