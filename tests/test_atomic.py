"""Atomic, exclusive and durable writes (atomic.py): what a crash, a power cut or a second
writer can do to a file loraqa writes."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from loraqa import atomic
from loraqa.atomic import (
    atomic_directory,
    replace_directory,
    write_text_atomic,
    write_text_exclusive,
)

needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names fsynced files through /proc")


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_get_the_permissions_the_umask_gives(tmp_path, umask_022):
    write_text_atomic(tmp_path / "metrics.json", "{}")
    write_text_exclusive(tmp_path / "answers.jsonl", "{}\n")
    with atomic_directory(tmp_path / "adapter") as tmp:
        (tmp / "weights").write_text("w")
    assert mode(tmp_path / "metrics.json") == 0o644  # mkstemp alone gives 0600
    assert mode(tmp_path / "answers.jsonl") == 0o644
    assert mode(tmp_path / "adapter") == 0o755  # mkdtemp alone gives 0700


def test_exclusive_write_refuses_an_existing_file_and_a_dangling_link(tmp_path):
    existing = tmp_path / "answers.jsonl"
    existing.write_text("mine")
    with pytest.raises(FileExistsError):
        write_text_exclusive(existing, "new")
    assert existing.read_text() == "mine"

    link, target = tmp_path / "link.jsonl", tmp_path / "elsewhere.jsonl"
    link.symlink_to(target)  # dangling: following it would create `elsewhere.jsonl`
    with pytest.raises(FileExistsError):
        write_text_exclusive(link, "new")
    assert not target.exists() and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.jsonl", "link.jsonl"]  # no temp left


def test_two_writers_racing_for_one_new_file_exactly_one_wins(tmp_path):
    """Threads released together by a barrier, many times: one writer succeeds, the other is refused,
    and the file holds the winner's text whole (a plain open-and-write, or a rename, lets both win)."""
    for round_ in range(30):
        target = tmp_path / f"answers-{round_}.jsonl"
        barrier = threading.Barrier(2)
        won, refused = [], []

        def write(text: str, barrier=barrier, target=target, won=won, refused=refused) -> None:
            barrier.wait()
            try:
                write_text_exclusive(target, text)
                won.append(text)
            except FileExistsError:
                refused.append(text)

        texts = [f"writer {i} " * 2000 for i in range(2)]
        threads = [threading.Thread(target=write, args=(t,)) for t in texts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1 and len(refused) == 1, (won, refused)
        assert target.read_text() == won[0]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _record_fsyncs_and_renames(monkeypatch) -> list[tuple]:
    events: list[tuple] = []
    fsync, replace, link = os.fsync, os.replace, os.link

    def recording_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def recording_replace(src, dst, **kwargs):
        replace(src, dst, **kwargs)
        events.append(("rename", str(Path(src).resolve()), str(Path(dst).resolve())))

    def recording_link(src, dst, **kwargs):
        link(src, dst, **kwargs)
        events.append(("rename", str(Path(src).resolve()), str(Path(dst).resolve())))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    monkeypatch.setattr(os, "link", recording_link)
    return events


@needs_proc
@pytest.mark.parametrize("write", [write_text_atomic, write_text_exclusive])
def test_a_file_write_fsyncs_the_contents_before_and_the_folder_after_the_rename(tmp_path, monkeypatch, write):
    events = _record_fsyncs_and_renames(monkeypatch)
    write(tmp_path / "metrics.json", "{}")
    renames = [i for i, e in enumerate(events) if e[0] == "rename" and e[2] == str(tmp_path / "metrics.json")]
    assert len(renames) == 1
    at, temp = renames[0], events[renames[0]][1]
    assert ("fsync", temp) in events[:at]  # the contents are on disk before the name points at them
    assert ("fsync", str(tmp_path)) in events[at + 1 :]  # and the new name itself is on disk


@needs_proc
def test_a_directory_replace_fsyncs_every_file_then_the_parent(tmp_path, monkeypatch):
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "old").write_text("old")
    source = tmp_path / ".adapter.tmp-x"
    (source / "sub").mkdir(parents=True)
    (source / "weights").write_text("w")
    (source / "sub" / "tokenizer.json").write_text("t")
    events = _record_fsyncs_and_renames(monkeypatch)
    replace_directory(source, target)
    final = next(i for i, e in enumerate(events) if e[0] == "rename" and e[1] == str(source))
    synced = {e[1] for e in events[:final] if e[0] == "fsync"}
    assert {str(source / "weights"), str(source / "sub" / "tokenizer.json"), str(source / "sub"), str(source)} <= synced
    assert ("fsync", str(tmp_path)) in events[final + 1 :]
    assert (target / "weights").read_text() == "w" and sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_a_filesystem_without_hard_links_still_gets_an_exclusive_whole_file(tmp_path, monkeypatch):
    import errno

    def no_links(src, dst, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    write_text_exclusive(tmp_path / "a.jsonl", "whole")
    assert (tmp_path / "a.jsonl").read_text() == "whole"
    with pytest.raises(FileExistsError):
        write_text_exclusive(tmp_path / "a.jsonl", "again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]


def test_umask_is_read_without_changing_it():
    old = os.umask(0o027)
    try:
        assert atomic.current_umask() == 0o027
        assert atomic.current_umask() == 0o027
    finally:
        os.umask(old)
