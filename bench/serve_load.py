"""Load test for `loraqa serve`: N concurrent clients on loopback for a fixed time.

The full benchmark (issue 17's bars; run on a quiet machine, one adapter per command, about
2 modes x 3 client counts x 60 s plus start-up and the predict baseline: ~8 min each):

    PYTHONPATH=src .venv/bin/python bench/serve_load.py --adapter runs/minilm-l6-squad/adapter \
        --seconds 60 --clients 1,8,32 --modes on,off --label minilm-l6
    PYTHONPATH=src .venv/bin/python bench/serve_load.py --adapter runs/smollm2-135m-squad/adapter \
        --seconds 60 --clients 1,8,32 --modes on,off --label smollm2-135m

A smoke run (seconds): `--seconds 5 --clients 1,8 --predict-questions 5`; `--model minilm-l6`
without `--adapter` serves the base alone (`loraqa serve --base-only`).

Mixed adapters (issue 27's bar: mixed >= 0.8x single), `--mixed 4`: two servers run side by side,
"single" serving the adapter alone (merged, as one would serve it) and "mixed" serving it under 4
names on one base (unmerged; peft's per-row adapter names put questions for all 4 in one model call),
each with batching on; clients spread their questions over the 4 names round-robin. The load phases
alternate single, mixed, single, ... `--rounds` times per client count, so a machine whose load
drifts weighs on both alike; reported per client count: the median answers/s of each and
`mixed_over_single`. `--assign paragraph` (default) gives each paragraph's questions to one name, as
a tenant asks about its own documents: SQuAD asks ~5 questions per paragraph, and a causal batch runs a
paragraph shared by its questions once per adapter (formulations/shared_prefix.py), so this keeps for
the mixed server the sharing the single one has. `--assign question` lets the names take turns
question by question, which splits each paragraph's questions over the adapters and so measures the
loss of that sharing as well. One adapter directory under 4 names costs what 4 different adapters on that
base cost (the LoRA work per row is the same); the equality of mixed answers with each adapter's
own is tests/serving/test_mixed_batches.py's. Results go to bench/results/serve-mixed<N>-<label>.json.

    PYTHONPATH=src .venv/bin/python bench/serve_load.py --adapter runs/minilm-l6-squad/adapter \
        --mixed 4 --seconds 20 --rounds 3 --clients 8 --label minilm-l6

For each batching mode (on: --max-batch 16, off: --max-batch 1, i.e. one question at a time) a real
server process is started on a free loopback port; for each client count every client sends one
SQuAD dev question at a time, waiting for its answer before the next, until the time is up or the
request bound is reached. Reported: answers/s, latency p50/p95/p99, errors (non-200 answers) and
lost requests (no answer at all: transport errors, timeouts). Before the servers start, the same
questions are answered one at a time in this process the way `loraqa predict` answers them, under
the same allocator (`predict_per_question_ms`, the median), and every 1-client run reports `p50_over_predict`
(the bar: <= 1.10). Results go to bench/results/serve-<label>.json with the git commit, dirty flag
and command (bench/record.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from record import provenance  # noqa: E402  (bench/record.py, next to this script)

from loraqa.allocator import reexec_with_tcmalloc  # noqa: E402
from loraqa.data.sources import load_records  # noqa: E402


def main() -> int:
    # The predict baseline is timed in this process: run it under the allocator `loraqa predict`
    # runs under (tcmalloc where the system has it, allocator.py), as the served `loraqa serve` does.
    # Until 2026-12-02 it ran under glibc's while the server ran under tcmalloc, an unequal
    # comparison; `machine.allocator` in the results file says which one ran.
    reexec_with_tcmalloc()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", help="adapter directory to serve (default: the base model alone)")
    parser.add_argument("--model", default="minilm-l6", help="base model with no --adapter")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=60.0, help="per client count and mode")
    parser.add_argument("--max-requests", type=int, default=20_000, help="bound per client count and mode")
    parser.add_argument("--modes", default="on,off", help="batching on (max batch 16), off (max batch 1)")
    parser.add_argument("--questions", type=int, default=200, help="distinct SQuAD dev questions cycled through")
    parser.add_argument("--label", default=None, help="results file name part (default: the adapter or model)")
    parser.add_argument("--request-timeout-s", type=float, default=60.0, help="the server's; longer waits get 504")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="server and predict")
    parser.add_argument(
        "--predict-questions", type=int, default=30, help="questions timed as `loraqa predict` (0: skip)"
    )
    parser.add_argument("--mixed", type=int, default=0, help="N: the adapter under N names, mixed vs alone")
    parser.add_argument("--rounds", type=int, default=3, help="with --mixed: alternations per client count")
    parser.add_argument(
        "--assign",
        default="paragraph",
        choices=["paragraph", "question"],
        help="with --mixed: each paragraph's questions go to one name (a tenant asks about its own documents), "
        "or the names take turns question by question",
    )
    args = parser.parse_args()
    if args.mixed:
        return _mixed_main(args)

    records = load_records("squad-v1.1:dev").records[: args.questions]
    bodies = [{"question": r.question, "context": r.context} for r in records]
    results = {
        **provenance(sys.argv),
        "adapter": args.adapter,
        "model": None if args.adapter else args.model,
        "seconds": args.seconds,
        "max_requests": args.max_requests,
        "device": args.device,
        "predict_per_question_ms": _predict_ms(args, records[: args.predict_questions]),
        "runs": [],
    }
    for mode in args.modes.split(","):
        max_batch = 16 if mode == "on" else 1
        with _server(args, max_batch) as url:
            for clients in [int(c) for c in args.clients.split(",")]:
                row = asyncio.run(_load(url, bodies, clients, args.seconds, args.max_requests))
                row.update(batching=mode, max_batch=max_batch, clients=clients)
                if clients == 1 and results["predict_per_question_ms"] and row["p50_ms"]:
                    row["p50_over_predict"] = round(row["p50_ms"] / results["predict_per_question_ms"], 3)
                results["runs"].append(row)
                print(json.dumps(row), flush=True)
    label = args.label or Path(args.adapter or args.model).parent.name or args.model
    out = ROOT / "bench" / "results" / f"serve-{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


def _mixed_main(args) -> int:
    """Answers/s with the adapter under `args.mixed` names (mixed batches) vs served alone, alternated."""
    if not args.adapter or args.mixed < 2:
        raise SystemExit("--mixed N needs --adapter and N >= 2")
    records = load_records("squad-v1.1:dev").records[: args.questions]
    bodies = [{"question": r.question, "context": r.context} for r in records]
    names = [f"a{i}" for i in range(args.mixed)]
    paragraphs: dict[str, int] = {}
    owners = [  # which name asks each question
        names[paragraphs.setdefault(r.context, len(paragraphs)) % len(names)]
        if args.assign == "paragraph"
        else names[k % len(names)]
        for k, r in enumerate(records)
    ]
    results = {
        **provenance(sys.argv),
        "adapter": args.adapter,
        "mixed_names": len(names),
        "assign": args.assign,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "device": args.device,
        "runs": [],
        "summary": [],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }  # the servers inherit it
    with _server(args, 16) as single, _server(args, 16, names) as mixed:
        for clients in [int(c) for c in args.clients.split(",")]:
            speeds: dict[str, list[float]] = {"single": [], "mixed": []}
            for round_index in range(args.rounds):
                for kind, url, adapters in (("single", single, None), ("mixed", mixed, owners)):
                    row = asyncio.run(_load(url, bodies, clients, args.seconds, args.max_requests, adapters))
                    row.update(kind=kind, round=round_index, clients=clients)
                    speeds[kind].append(row["answers_per_second"])
                    results["runs"].append(row)
                    print(json.dumps(row), flush=True)
            single_aps, mixed_aps = statistics.median(speeds["single"]), statistics.median(speeds["mixed"])
            summary = {
                "clients": clients,
                "single_answers_per_second": single_aps,
                "mixed_answers_per_second": mixed_aps,
                "mixed_over_single": round(mixed_aps / single_aps, 3) if single_aps else None,
                "per_round_ratio": [
                    round(m / s, 3) if s else None for s, m in zip(speeds["single"], speeds["mixed"], strict=True)
                ],
            }
            results["summary"].append(summary)
            print(json.dumps(summary), flush=True)
    label = args.label or Path(args.adapter).parent.name
    out = ROOT / "bench" / "results" / f"serve-mixed{args.mixed}-{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


def _predict_ms(args, records) -> float | None:
    """Median ms per question answered alone, loaded and answered as `loraqa predict` does."""
    if not records:
        return None
    from loraqa.config.loader import load_config
    from loraqa.inference.answer import answer
    from loraqa.inference.ready import load_for_answering

    config = load_config(None, [f"training.device={args.device}"])
    ready = load_for_answering(config, args.adapter, base_name=None if args.adapter else args.model)
    answer(ready, config, records[:1])  # warm-up
    times = []
    for record in records:
        started = time.perf_counter()
        answer(ready, config, [record])
        times.append(time.perf_counter() - started)
    del ready
    return round(1000 * statistics.median(times), 2)


async def _load(
    url: str, bodies: list[dict], clients: int, seconds: float, max_requests: int, adapters: list[str] | None = None
) -> dict:
    """Every client sends one question at a time; with `adapters`, question k names adapters[k]."""
    latencies: list[float] = []
    errors = lost = sent = 0
    statuses: dict[str, int] = {}  # the errors by HTTP status (504: waited past --request-timeout-s)
    deadline = time.perf_counter() + seconds

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal errors, lost, sent
        position = index
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            body = bodies[position % len(bodies)]
            if adapters:
                body = {**body, "adapter": adapters[position % len(bodies)]}
            position += clients
            started = time.perf_counter()
            try:
                response = await http.post(f"{url}/v1/answer", json=body)
            except httpx.HTTPError:
                lost += 1
                continue
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        elapsed = time.perf_counter() - began
    return {
        "sent": sent,
        "answered": len(latencies),
        "errors": errors,
        "error_statuses": statuses,
        "lost": lost,
        "answers_per_second": round(len(latencies) / elapsed, 3),
        **{f"p{q}_ms": _percentile(latencies, q) for q in (50, 95, 99)},
    }


def _percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(1000 * values[0], 2)
    return round(1000 * statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)


class _server:
    """A `loraqa serve` process on a free loopback port, stopped on exit."""

    def __init__(self, args, max_batch: int, names: list[str] | None = None):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        served = ["--adapter", f"bench={args.adapter}"] if args.adapter else ["--base-only", "--model", args.model]
        if names:  # the one adapter under several names: they share one base, unmerged
            served = [part for name in names for part in ("--adapter", f"{name}={args.adapter}")]
        self.command = [
            sys.executable,
            "-m",
            "loraqa",
            "serve",
            *served,
            "--port",
            str(self.port),
            "--max-batch",
            str(max_batch),
            "--device",
            args.device,
            "--request-timeout-s",
            str(args.request_timeout_s),
        ]

    def __enter__(self) -> str:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.process = subprocess.Popen(self.command, env=env)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return url
            except httpx.TransportError:
                time.sleep(0.5)
        raise SystemExit("server did not start within 600 s")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    sys.exit(main())
