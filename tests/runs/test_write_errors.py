"""Telling a failed write from a bug, whatever library raised it (runs/write_errors.py). The real
full disk is in training/test_disk_full.py; these cases run without root."""

from __future__ import annotations

import errno
import os

import pytest

from loraqa.runs import write_errors
from loraqa.runs.write_errors import saving, write_failure


class FakeStatvfs:
    def __init__(self, free_bytes: int, read_only: bool = False):
        self.f_bavail, self.f_frsize = free_bytes // 4096, 4096
        self.f_flag = os.ST_RDONLY if read_only else 0


def torch_save_error() -> RuntimeError:
    """What torch.save raises on a full disk: a RuntimeError raised while handling another, no errno."""
    try:
        try:
            raise RuntimeError("basic_ios::clear: iostream error")
        except RuntimeError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0") from None
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize(
    "exc, code",
    [
        (OSError(errno.ENOSPC, "No space left on device"), errno.ENOSPC),
        (Exception("No space left on device (os error 28)"), errno.ENOSPC),  # tokenizers
        (Exception("Error while serializing: I/O error: Disk quota exceeded (os error 122)"), errno.EDQUOT),
        (OSError(errno.EROFS, "Read-only file system"), errno.EROFS),
    ],
)
def test_an_errno_in_the_error_or_its_message_is_a_write_failure(exc, code, tmp_path):
    failure = write_failure(exc, tmp_path / "x")
    assert failure.errno == code and failure.strerror == os.strerror(code)
    assert failure.filename == str(tmp_path / "x")


def test_the_errno_is_found_down_the_chain_and_keeps_its_file(tmp_path):
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/disk/optimizer.pt")
        except OSError as inner:
            raise RuntimeError("file write failed") from inner
    except RuntimeError as exc:
        failure = write_failure(exc, tmp_path)
    assert (failure.errno, failure.filename) == (errno.ENOSPC, "/disk/optimizer.pt")


@pytest.mark.parametrize(
    "disk, code",
    [
        (FakeStatvfs(0), errno.ENOSPC),
        (FakeStatvfs(200_000), errno.ENOSPC),
        (FakeStatvfs(10**9, read_only=True), errno.EROFS),
        (FakeStatvfs(10**9), None),
    ],
)
def test_an_error_naming_no_errno_inside_a_save_asks_the_filesystem(disk, code, tmp_path, monkeypatch):
    monkeypatch.setattr(write_errors.os, "statvfs", lambda path: disk)
    failure = write_failure(torch_save_error(), tmp_path / "not-yet" / "optimizer.pt", inside_save=True)
    assert (failure and failure.errno) == code
    # Outside a save, a RuntimeError on a full disk is no evidence (a CUDA out-of-memory is one too).
    assert write_failure(torch_save_error(), tmp_path, inside_save=False) is None


def test_saving_raises_an_oserror_for_a_write_failure_and_anything_else_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setattr(write_errors.os, "statvfs", lambda path: FakeStatvfs(0))
    with pytest.raises(OSError) as caught, saving(tmp_path / "checkpoint-2"):
        raise torch_save_error()
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "checkpoint-2")
    assert isinstance(caught.value.__cause__, RuntimeError)  # kept for whoever debugs
    with pytest.raises(KeyError), saving(tmp_path):
        raise KeyError("a bug")  # a KeyError is a bug, even on a full disk
