"""bench/record.py: the provenance every benchmark results file records (schema 2)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_record():
    # bench/ is a folder of scripts, not a package: load the module from its file
    spec = importlib.util.spec_from_file_location("bench_record", REPO / "bench" / "record.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


record = _load_record()


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A clean git repository with one commit and a results folder, like this one's."""
    root = tmp_path / "repo"
    (root / "bench" / "results").mkdir(parents=True)
    (root / "bench" / "speed.py").write_text("print('bench')\n")
    (root / "bench" / "results" / "old.json").write_text("{}\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "first")
    return root


def test_provenance_records_commit_clean_tree_command_date_and_machine(repo: Path):
    p = record.provenance([str(repo / "bench" / "speed.py"), "--models", "minilm-l6", "a b"], root=repo)
    assert set(p) == {"schema_version", "git_commit", "git_dirty", "command", "date", "machine"}
    assert p["schema_version"] == 2
    assert p["git_commit"] == _git(repo, "rev-parse", "HEAD") and len(p["git_commit"]) == 40
    assert p["git_dirty"] is False
    # the script relative to the tree (no machine path), arguments shell-quoted as run
    assert p["command"] == "bench/speed.py --models minilm-l6 'a b'"
    assert p["date"][:4].isdigit() and "T" in p["date"]
    assert set(p["machine"]) == {"cpu_count", "torch", "allocator"}
    assert p["machine"]["cpu_count"] >= 1
    json.dumps(p)  # a results file can hold it as it is


def test_a_changed_or_untracked_file_makes_the_tree_dirty(repo: Path):
    (repo / "bench" / "speed.py").write_text("print('changed')\n")
    assert record.provenance(["x"], root=repo)["git_dirty"] is True
    _git(repo, "checkout", "-q", "--", "bench/speed.py")
    assert record.provenance(["x"], root=repo)["git_dirty"] is False
    (repo / "new_module.py").write_text("")
    assert record.provenance(["x"], root=repo)["git_dirty"] is True


def test_results_written_into_the_tree_do_not_make_it_dirty(repo: Path):
    (repo / "bench" / "results" / "speed-new.json").write_text("{}\n")  # the run's own output
    (repo / "bench" / "results" / "old.json").write_text('{"rewritten": 1}\n')
    assert record.provenance(["x"], root=repo)["git_dirty"] is False


def test_outside_a_git_repository_the_git_fields_are_none(tmp_path: Path, monkeypatch):
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never find a repository above
    p = record.provenance(["bench/speed.py"], root=plain)
    assert p["git_commit"] is None and p["git_dirty"] is None
    assert p["schema_version"] == 2 and p["command"] == "bench/speed.py"


def test_without_git_installed_the_git_fields_are_none(repo: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(repo / "no-such-bin"))
    p = record.provenance(["x"], root=repo)
    assert p["git_commit"] is None and p["git_dirty"] is None


def test_stamped_puts_provenance_first_and_keeps_the_bench_machine_details(repo: Path):
    data = {"command": "old style", "date": "20261124-132909", "machine": {"cpu": "Xeon", "torch": "x"}, "runs": [1]}
    out = record.stamped(data, ["bench/quality.py", "--quick"], root=repo)
    assert list(out)[:6] == ["schema_version", "git_commit", "git_dirty", "command", "date", "machine"]
    assert out["command"] == "bench/quality.py --quick" and out["date"] != data["date"]
    assert out["runs"] == [1]
    assert out["machine"]["cpu"] == "Xeon" and out["machine"]["torch"] == "x"  # the bench's own detail wins
    assert "cpu_count" in out["machine"] and "allocator" in out["machine"]


def test_quality_bench_writes_its_results_with_provenance(tmp_path: Path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # as when the script runs: its siblings import
    spec = importlib.util.spec_from_file_location("bench_quality", REPO / "bench" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    monkeypatch.setattr("sys.argv", [str(REPO / "bench" / "quality.py"), "--models", "minilm-l6"])
    args = type("Args", (), {"out_dir": str(tmp_path), "quick": False})()
    quality._write({"command": "quality.py --models minilm-l6", "machine": {"platform": "p"}, "runs": []}, args, "s")
    written = json.loads((tmp_path / "quality-s.json").read_text())
    assert written["schema_version"] == 2 and written["command"] == "bench/quality.py --models minilm-l6"
    assert "git_commit" in written and "git_dirty" in written
    assert written["machine"]["platform"] == "p" and written["runs"] == []


def test_quality_bench_records_each_score_with_its_interval(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location("bench_quality", REPO / "bench" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    from loraqa.inference.uncertainty import score_intervals

    rows = [{"exact_match": float(i % 3 == 0), "f1": (i % 5) / 4} for i in range(40)]
    metrics = {
        "exact_match": 100 * sum(r["exact_match"] for r in rows) / 40,
        "f1": 50.0,
        "count": 40,
        "slices": {},
        **score_intervals(rows),
    }
    kept = quality._scores(metrics)
    assert kept["exact_match_ci"] == metrics["exact_match_ci"] and kept["f1_ci"] == metrics["f1_ci"]
    assert kept["f1_ci"]["low"] < kept["f1_ci"]["high"] and "slices" not in kept
