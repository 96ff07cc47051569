"""`python -m loraqa serve` as a real process on a free loopback port, talked to over HTTP, and its
web page driven in headless Chromium (Debian's package through Playwright; no browser download)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
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


@pytest.fixture(scope="module")
def server(trained_adapters, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "loraqa", "serve", "--port", str(port), "--device", "cpu",
               "--adapter", f"squad={trained_adapters['extractive']}", "--adapter", f"t5={trained_adapters['seq2seq']}",
               "generation.max_new_tokens=4"]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_real_server_answers_over_http(server):
    with httpx.Client(base_url=server, timeout=60) as client:
        assert [a["name"] for a in client.get("/v1/adapters").json()["adapters"]] == ["squad", "t5"]
        one = client.post("/v1/answer", json={"question": "Who founded Avalon?", "context": CONTEXT})
        assert one.status_code == 200
        body = one.json()
        assert body["adapter"] == "squad" and CONTEXT[body["start"] : body["end"]] == body["answer"]
        bad = client.post("/v1/answer", content=b"{oops", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
        both = client.post("/v1/answer", json=[{"question": "When?", "context": CONTEXT, "adapter": "t5"},
                                               {"question": "Who?", "context": CONTEXT, "adapter": "squad"}])  # fmt: skip
        assert [b["adapter"] for b in both.json()] == ["t5", "squad"]
        assert client.get("/health").json()["status"] == "ok"


def test_server_binds_loopback_only_by_default(server):
    assert server.startswith("http://127.0.0.1:")


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
            shot = os.environ.get("LORAQA_PAGE_SCREENSHOT")
            if shot:
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
