"""Adapters loaded and unloaded while a real `loraqa serve` process answers 16 clients on another one.

While adapter A answers 16 concurrent clients the whole time, adapter B (a base of its own) is refused
without the admin token (401) or outside the adapter root (403), a broken copy is refused in one line
(422), then B is loaded, answers, and is unloaded: A never gets an error, keeps answering while B
loads, and the process's memory after unloading B's base returns near the level before loading it.
"""

from __future__ import annotations

import gc
import os
import shutil
import threading
import time
import weakref
from pathlib import Path

import httpx
import pytest
from test_process import CONTEXT, start_server, stop

ADMIN = "admin-secret"
CLIENTS = 16


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_load_use_and_unload_an_adapter_while_another_answers_16_clients(trained_adapters, tmp_path):
    root = Path(trained_adapters["extractive"]).parents[1]  # serving-runs/: every trained adapter's run
    broken = root / "broken-copy"
    if not broken.exists():
        shutil.copytree(Path(trained_adapters["causal"]), broken)
        (broken / "adapter_config.json").write_text("{not json")
    os.environ["LORAQA_ADMIN_TOKEN"] = ADMIN
    try:
        process, url = start_server(
            tmp_path / "serve.log",
            "--adapter",
            f"squad={trained_adapters['extractive']}",
            "--adapter-root",
            str(root),
            "generation.max_new_tokens=4",
        )
    finally:
        del os.environ["LORAQA_ADMIN_TOKEN"]
    admin = {"Authorization": f"Bearer {ADMIN}"}
    done = threading.Event()
    answers: list[tuple[float, int]] = []  # (time answered, status) of A's requests

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while not done.is_set():
                try:
                    r = http.post("/v1/answer", json={"question": "Who founded Avalon?", "context": CONTEXT})
                    answers.append((time.monotonic(), r.status_code))
                except httpx.HTTPError as exc:
                    answers.append((time.monotonic(), type(exc).__name__))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while len(answers) < CLIENTS:
            assert time.monotonic() < deadline, "A was not answering"
            time.sleep(0.05)
        with httpx.Client(base_url=url, timeout=120) as http:
            b = {"name": "gpt", "path": "causal/adapter"}
            assert http.post("/v1/adapters", json=b).status_code == 401
            assert http.post("/v1/adapters", json={}).status_code == 401  # the token is checked before the body
            assert http.post("/v1/adapters", json=b, headers={"Authorization": "Bearer nope"}).status_code == 401
            outside = http.post("/v1/adapters", json={"name": "x", "path": "/etc"}, headers=admin)
            assert outside.status_code == 403 and "outside the adapter root" in outside.json()["error"]
            escape = http.post("/v1/adapters", json={"name": "x", "path": "../../../etc"}, headers=admin)
            assert escape.status_code == 403
            bad = http.post("/v1/adapters", json={"name": "bad", "path": "broken-copy"}, headers=admin)
            assert bad.status_code == 422 and "\n" not in bad.json()["error"], bad.text
            assert [a["name"] for a in http.get("/v1/adapters").json()["adapters"]] == ["squad"]  # nothing changed
            before = rss_mb(process.pid)
            load_started = time.monotonic()
            loaded = http.post("/v1/adapters", json=b, headers=admin)
            load_ended = time.monotonic()
            assert loaded.status_code == 201, loaded.text
            assert loaded.json()["adapter"]["formulation"] == "causal"
            assert http.post("/v1/adapters", json=b, headers=admin).status_code == 409
            asked = http.post("/v1/answer", json={"question": "Who?", "context": CONTEXT, "adapter": "gpt"})
            assert asked.status_code == 200 and asked.json()["adapter"] == "gpt"
            with_b = rss_mb(process.pid)
            assert http.delete("/v1/adapters/gpt").status_code == 401
            assert http.delete("/v1/adapters/gpt", headers=admin).status_code == 200
            gone = http.post("/v1/answer", json={"question": "Who?", "context": CONTEXT, "adapter": "gpt"})
            assert gone.status_code == 404
            after = rss_mb(process.pid)
            assert http.delete("/v1/adapters/squad", headers=admin).status_code == 409  # the last one stays
    finally:
        done.set()
        for thread in threads:
            thread.join(120)
        stop(process)
    statuses = [s for _, s in answers]
    assert statuses.count(200) == len(statuses), {s: statuses.count(s) for s in set(statuses)}
    during_load = [t for t, _ in answers if load_started < t < load_ended]
    print(
        f"A: {len(statuses)} answers, {len(during_load)} while B loaded ({load_ended - load_started:.2f} s); "
        f"RSS {before:.0f} MB before B, {with_b:.0f} MB with B, {after:.0f} MB after unloading B"
    )
    assert during_load, "A was not answered while B loaded"
    assert after - before <= max(0.5 * (with_b - before), 20), (before, with_b, after)


def test_unloading_the_last_adapter_of_a_base_frees_the_base(trained_adapters, serve_config):
    """No reference to an unloaded adapter's base survives (the tiny base is too small for RSS to show it)."""
    from fastapi.testclient import TestClient

    from loraqa.serving.app import create_app
    from loraqa.serving.registry import AdapterSource, build_registry
    from loraqa.serving.settings import ServeSettings

    registry = build_registry([AdapterSource("squad", trained_adapters["extractive"])], serve_config)
    root = str(Path(trained_adapters["extractive"]).parents[1])
    settings = ServeSettings(admin_token=ADMIN, adapter_root=root)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(registry, settings)) as client:
        assert (
            client.post("/v1/adapters", json={"name": "gpt", "path": "causal/adapter"}, headers=admin).status_code
            == 201
        )
        model = weakref.ref(registry.adapters["gpt"].ready.model)
        asked = client.post("/v1/answer", json={"question": "Who?", "context": CONTEXT, "adapter": "gpt"})
        assert asked.status_code == 200
        assert client.delete("/v1/adapters/gpt", headers=admin).status_code == 200
        gc.collect()
        assert model() is None, gc.get_referrers(model())[:3]
        assert client.post("/v1/answer", json={"question": "Who?", "context": CONTEXT}).status_code == 200
