"""Sweep throughput and pruning on one small grid: `--workers 1` vs `--workers 2`, without and with
`--prune median` (and with the pruner's warmup off); wall time, the best validation F1 each variant
found, and the cells it pruned.

    PYTHONPATH=src python bench/sweep.py            # the full grid on minilm-l6 (minutes per trial)
    PYTHONPATH=src python bench/sweep.py --quick    # a 4-cell grid, a few steps: checks the bench runs

Each variant is a real `loraqa sweep` process in a fresh directory. Writes
bench/results/sweep-<date>.json (schema below) unless --quick; --out overrides the path.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from loraqa.runs.files import SWEEP_FILE
from loraqa.runs.provenance import commit_of, git

SCHEMA_VERSION = 1
ROOT = Path(__file__).resolve().parents[1]

FULL = {
    "config": "minilm-l6-squad",
    "overrides": [
        "data.train_samples=600",
        "data.validation_samples=60",
        "data.test_samples=100",
        "training.max_steps=16",
        "training.eval_strategy=steps",
        "training.eval_steps=4",
        "evaluation.baseline=false",
        "training.per_device_train_batch_size=16",
    ],  # the config's until 2026-12-02: runs stay comparable
    # Learning rates high enough that 16 steps move validation F1; 9 cells, so the median pruner
    # (4 startup trials) can act on 5 of them.
    "grid": ["training.learning_rate=1e-3,3e-3,6e-3", "lora.target_modules=qv,attention,attention_mlp"],
}
QUICK = {
    "config": "minilm-l6-squad",
    "overrides": [
        "data.train_samples=48",
        "data.validation_samples=2",
        "data.test_samples=2",
        "training.max_steps=2",
        "training.eval_strategy=steps",
        "training.eval_steps=1",
        "evaluation.baseline=false",
        "training.per_device_train_batch_size=4",
        "model.max_seq_length=128",
        "model.doc_stride=32",
    ],
    "grid": ["lora.r=4,8"],  # two cells: too few for the pruner to act; this only checks the bench runs
}
VARIANTS = [
    ("workers=1", ["--workers", "1"]),
    ("workers=2", ["--workers", "2"]),
    ("workers=1 prune=median", ["--workers", "1", "--prune", "median"]),
    ("workers=2 prune=median", ["--workers", "2", "--prune", "median"]),
    # The pruner free to stop a trial at its first evaluation (the behaviour before --prune-warmup)
    ("workers=1 prune=median warmup=0", ["--workers", "1", "--prune", "median", "--prune-warmup", "0"]),
]


def run_variant(setup: dict, label: str, options: list[str], root: Path) -> dict:
    sweep_dir = root / label.replace(" ", "_").replace("=", "-")
    argv = [
        sys.executable,
        "-m",
        "loraqa",
        "sweep",
        setup["config"],
        *setup["overrides"],
        "--name",
        sweep_dir.name,
        "--dir",
        str(sweep_dir),
        "--grid",
        *setup["grid"],
        *options,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = process.communicate()
    except BaseException:  # Ctrl-C: stop the sweep and its worker processes too, not only the parent
        os.killpg(process.pid, signal.SIGKILL)
        raise
    done = subprocess.CompletedProcess(argv, process.returncode, "", stderr)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bench: variant {label!r} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads((sweep_dir / SWEEP_FILE).read_text())
    best = summary.get("best") or {}
    return {
        "variant": label,
        "options": options,
        "wall_seconds": round(seconds, 1),
        "trials": summary["trials"],
        "best_config": best.get("config"),
        "best_validation_f1": best.get("validation_mean"),
        "best_test_f1": best.get("test_f1_mean"),
        "pruned": [{"cell": p["cell"], "step": p["step"]} for p in summary.get("pruned", [])],
    }


def small_squad(path: Path, articles: int = 3) -> Path:
    """The first few articles of the bundled SQuAD dev file, as a SQuAD JSON file (quick mode only)."""
    source = ROOT / "src" / "loraqa" / "data" / "bundled" / "squad" / "dev-v1.1.json.gz"
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        squad = json.load(handle)
    path.write_text(json.dumps({"version": squad.get("version", "1.1"), "data": squad["data"][:articles]}))
    return path


def git_state() -> dict:
    return {"commit": commit_of(ROOT), "dirty": bool(git(ROOT, "status", "--porcelain"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny grid and budget: check the bench works (no results file)"
    )
    parser.add_argument("--out", help="results file (default bench/results/sweep-<date>.json)")
    parser.add_argument("--variants", help="comma-separated labels to run, e.g. 'workers=1,workers=2' (default all)")
    args = parser.parse_args(argv)
    setup = dict(QUICK if args.quick else FULL)
    wanted = [v.strip() for v in args.variants.split(",")] if args.variants else [v[0] for v in VARIANTS]
    unknown = set(wanted) - {v[0] for v in VARIANTS}
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}; known: {[v[0] for v in VARIANTS]}")
    out = (
        None
        if args.quick and not args.out
        else Path(args.out or ROOT / "bench" / "results" / f"sweep-{datetime.now():%Y-%m-%d-%H%M%S}.json")
    )
    result = {
        "schema_version": SCHEMA_VERSION,
        "bench": "sweep",
        "quick": args.quick,
        "command": " ".join(
            [Path(sys.executable).name, "bench/sweep.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        **git_state(),
        "cpus": len(os.sched_getaffinity(0)),
        "setup": setup,
        "results": [],
    }
    with tempfile.TemporaryDirectory(prefix="loraqa-bench-sweep-") as tmp:
        if args.quick:  # reading all of SQuAD per trial would dominate a few-step trial
            small = small_squad(Path(tmp) / "squad-small.json")
            setup["overrides"] = [f"data.train={small}", f"data.test={small}", *setup["overrides"]]
        for label, options in [v for v in VARIANTS if v[0] in wanted]:
            result["results"].append(run_variant(setup, label, options, Path(tmp)))
            r = result["results"][-1]
            print(
                f"{label:<24} {r['wall_seconds']:>8.1f} s  best validation F1 {r['best_validation_f1']}  "
                f"trials {r['trials']}",
                flush=True,
            )
            # Written after every variant, so a bench stopped part-way keeps what it measured.
            result["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            result["complete"] = len(result["results"]) == len(wanted)
            if out:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(result, indent=1) + "\n")
    if out is None:
        print(json.dumps(result, indent=1)[:2000])
        return 0
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
