"""`python -m loraqa serve` as a real process on a free loopback port, talked to over HTTP, and its
web page driven in headless Chromium (Debian's package through Playwright; no browser download)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from browser import CHROMIUM, CHROMIUM_ARGS

CONTEXT = "The town of Avalon was founded in 1800 by Ada. It lies near a river and has a market."
SRC = str(Path(__file__).resolve().parents[2] / "src")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(log: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`python -m loraqa serve ARGS` on a free port, once /health answers: (process, url)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "loraqa", "serve", "--port", str(port), "--device", "cpu", *args]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"server did not come up: {log.read_text()[-2000:]}")
        time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def server(trained_adapters, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    process, url = start_server(
        log,
        "--adapter",
        f"squad={trained_adapters['extractive']}",
        "--adapter",
        f"t5={trained_adapters['seq2seq']}",
        "generation.max_new_tokens=4",
    )
    try:
        yield url
    finally:
        stop(process)


def test_real_server_answers_over_http(server):
    with httpx.Client(base_url=server, timeout=60) as client:
        assert [a["name"] for a in client.get("/v1/adapters").json()["adapters"]] == ["squad", "t5"]
        one = client.post("/v1/answer", json={"question": "Who founded Avalon?", "context": CONTEXT})
        assert one.status_code == 200
        body = one.json()
        assert body["adapter"] == "squad" and CONTEXT[body["start"] : body["end"]] == body["answer"]
        bad = client.post("/v1/answer", content=b"{oops", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
        both = client.post(
            "/v1/answer",
            json=[
                {"question": "When?", "context": CONTEXT, "adapter": "t5"},
                {"question": "Who?", "context": CONTEXT, "adapter": "squad"},
            ],
        )
        assert [b["adapter"] for b in both.json()] == ["t5", "squad"]
        assert client.get("/health").json()["status"] == "ok"


def test_server_binds_loopback_only_by_default(server):
    assert server.startswith("http://127.0.0.1:")


def test_sigterm_under_load_answers_every_request_in_flight_then_exits_0(trained_adapters, tmp_path):
    """Every request the server holds at SIGTERM gets its answer or a JSON 503 (none a plain-text 500,
    none left without a response), and the process exits 0 once the drain timeout has passed."""
    drain_s, clients = 2, 32
    log = tmp_path / "serve.log"
    # One question per model call and long answers: the queue takes seconds, so SIGTERM finds work.
    process, url = start_server(
        log,
        "--adapter",
        f"gpt={trained_adapters['causal']}",
        "--max-batch",
        "1",
        "--drain-timeout-s",
        str(drain_s),
        "generation.max_new_tokens=48",
    )
    results: list[tuple | None] = [None] * clients

    def ask(index: int) -> None:
        try:
            r = httpx.post(
                f"{url}/v1/answer", json={"question": f"Who founded Avalon? ({index})", "context": CONTEXT}, timeout=120
            )
            results[index] = (r.status_code, r.headers.get("content-type"), r.text, time.monotonic())
        except httpx.HTTPError as exc:
            results[index] = (type(exc).__name__, None, str(exc), time.monotonic())

    try:
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while True:  # until the server holds every request (answered ones counted first: never over-counted)
            answered = sum(r is not None for r in results)
            health = httpx.get(f"{url}/health", timeout=60).json()
            if answered + health["pending"] + health["busy"] >= clients:
                break
            assert time.monotonic() < deadline, "the server never received every request"
            time.sleep(0.05)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(120)
        assert process.wait(timeout=drain_s + 60) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            stop(process)
    statuses = [r[0] for r in results]
    for status, content_type, text, _ in results:
        assert status == 200 or (status == 503 and content_type == "application/json"), (status, text)
        if status == 503:
            assert "shutting down" in json.loads(text)["error"]
    in_flight = [r for r in results if r[3] > signalled]
    assert in_flight, "every request was answered before SIGTERM: the test proved nothing"
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    print(
        f"at SIGTERM {len(in_flight)} of {clients} in flight: {statuses.count(200)} answered, {statuses.count(503)} 503"
    )


def _browser_available() -> bool:
    return Path(CHROMIUM).is_file() and importlib.util.find_spec("playwright") is not None


@pytest.mark.skipif(
    not _browser_available() and os.environ.get("CI") != "true",
    reason="Debian chromium or the playwright package is missing (CI installs both)",
)
def test_web_page_highlights_the_answer(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            failed: list[str] = []  # every request succeeds (headless asks no favicon: test_page_files checks it)
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.on("requestfailed", lambda r: failed.append(f"failed {r.url}"))
            page.goto(server + "/")
            page.wait_for_selector("#adapter option[value='squad']", state="attached")
            page.select_option("#sample", "0")  # the Avalon sample context
            assert page.input_value("#context") == CONTEXT
            page.fill("#question", "Who founded Avalon?")
            page.click("#ask")
            mark = page.wait_for_selector("#highlighted mark", timeout=30_000)
            expected = httpx.post(
                f"{server}/v1/answer", json={"question": "Who founded Avalon?", "context": CONTEXT}
            ).json()
            assert mark.inner_text() == expected["answer"]
            assert page.inner_text("#answer-text") == expected["answer"]
            assert "confidence" in page.inner_text("#confidence")
            page.fill("#question", "When was Avalon founded?")
            page.select_option("#adapter", "t5")
            page.click("#ask")
            page.wait_for_function("document.querySelectorAll('#history li').length === 2", timeout=30_000)
            assert "Who founded Avalon?" in page.inner_text("#history")
            page.locator("#history button", has_text="Who founded Avalon?").click()  # history re-shows an answer
            assert page.inner_text("#highlighted mark") == expected["answer"]
            assert failed == []
            shot = os.environ.get("LORAQA_PAGE_SCREENSHOT")
            if shot:
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
