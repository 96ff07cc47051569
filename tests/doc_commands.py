"""The commands a page of the documentation tells users to type, run as written on tiny models.

A page's commands are the lines of its ```bash blocks, continuation lines joined and comments
dropped. `loraqa ...` lines run in-process (`loraqa serve` as a real process on a free port, to which
the page's `curl` lines are then sent), `export NAME=VALUE` sets the environment of the lines after
it, and `cd DIR` is refused (the pages run from the repository root). Lines the suite does not run as
written (installs, launchers and tools other tests cover) must start with one of NOT_RUN_HERE; any
other line fails, so a new kind of command is never skipped silently.

Each loraqa command keeps its shape (subcommand, config, flags, paths, the page's own overrides):
only the model and the budget shrink, by overrides added after the page's own (later ones win).
Code blocks with a `title="FILE"` (```jsonl title="my-train.jsonl") are written into the working
directory first, so a page can show the files its commands read.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
NOT_RUN_HERE = (
    "TORCH_SPEC=",  # bootstrap.sh with another torch build
    "bash scripts/",  # bootstrap.sh, main-job.sh, test.sh, gpu-check.sh: the main job is its `loraqa train`
    ". .venv/bin/activate",
    "pip install",
    "torchrun",  # tests/distributed runs loraqa under torchrun
    "accelerate launch",
    "tensorboard",
    "wandb sync",
    "wandb login",
    "mlflow ui",
    "optuna-dashboard",
    "nvidia-smi",
    'python -c "import torch',  # a CUDA check
    "open ",
    "mkdocs",
)
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)
TITLE = re.compile(r'title="([^"]+)"')


@dataclass
class Page:
    commands: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)  # argv, environment
    requests: list[list[str]] = field(default_factory=list)  # curl argv, sent to the page's server
    files: dict[str, str] = field(default_factory=dict)


def read_page(path: Path) -> Page:
    page, env = Page(), {}
    for language, info, body in FENCE.findall(path.read_text(encoding="utf-8")):
        title = TITLE.search(info)
        if title:
            page.files[title.group(1)] = body
            continue
        if language != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            if words[0] == "loraqa":
                page.commands.append((words[1:], dict(env)))
            elif words[0] == "export":
                env.update(word.split("=", 1) for word in words[1:])
            elif words[0] == "curl":
                page.requests.append(words)
            elif not line.strip().startswith(NOT_RUN_HERE):
                raise AssertionError(f"{path.name}: the docs test does not know how to run: {line.strip()}")
    return page


# --- shrinking a command to tiny models and budgets -----------------------------------------------

FAMILIES = [
    ("minilm", "bert"),
    ("smollm2", "llama"),
    ("gpt2", "gpt2"),
    ("distilbert", "distilbert"),
    ("t5", "t5"),
    ("flan-t5", "t5"),
]


def family_of(name: str) -> str:
    """The tiny family standing in for a shipped config or model name (offline models included)."""
    stem = Path(name).name.removesuffix(".yaml").lower()
    for start, family in FAMILIES:
        if start in stem:
            return family
    return "bert"


def _data(files: dict[str, Path], argv: list[str], written: set[str]) -> list[str]:
    own = {a.split("=", 1)[-1] for a in argv}  # the page's own data files, or its own config file
    data = [] if own & written else [f"data.train={files['train']}", f"data.test={files['test']}"]
    return [
        *data,
        "data.validation_samples=4",
        "data.test_samples=8",
        "training.device=cpu",
        "evaluation.batch_size=4",
        "generation.max_new_tokens=4",
        "model.max_seq_length=128",
        "model.doc_stride=32",
    ]


TRAINING = [
    "training.max_steps=2",
    "training.report_to=none",
    "training.per_device_train_batch_size=4",
    "training.eval_steps=1",
    "training.save_steps=1",
    "lora.allow_large_trainable_share=true",
    "evaluation.baseline=false",
]


def shrunk(argv: list[str], models, files: dict[str, Path], written: set[str]) -> list[str]:
    """The page's command with tiny models and budgets added (never replacing its own words)."""
    command, rest = argv[0], argv[1:]
    tiny = [a if not a.startswith("model.name=") else f"model.name={models(family_of(a[11:]))}" for a in argv]
    if command == "train":
        return [*tiny, f"model.name={models(family_of(_model_hint(rest)))}", *_data(files, argv, written), *TRAINING]
    if command == "eval":
        return [*tiny, *_data(files, argv, written)]
    if command in ("predict", "merge"):
        return [*tiny, "training.device=cpu"]
    if command in ("sweep", "compare"):
        # Shared overrides go after the configs, before the first flag (--grid would take them as axes).
        first_flag = next((i for i, a in enumerate(tiny) if a.startswith("--")), len(tiny))
        positional = [a for a in tiny[1:first_flag] if "=" not in a]
        # One tiny model for all (a comparison's configs name models of one family in the pages).
        model = f"model.name={models(family_of(positional[0] if positional else 'minilm'))}"
        return [*tiny[:first_flag], model, *_data(files, argv, written), *TRAINING, *tiny[first_flag:]]
    return tiny


def _model_hint(rest: list[str]) -> str:
    named = [a[11:] for a in rest if a.startswith("model.name=")]
    return named[-1] if named else (rest[0] if rest and "=" not in rest[0] and not rest[0].startswith("-") else "")


# --- serving ---------------------------------------------------------------------------------------


def serve(argv: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    """`python -m loraqa serve ...` as the page writes it, on a free port, once /health answers."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    environment = {
        **os.environ,
        **env,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "loraqa", *argv, "--port", str(port), "--device", "cpu"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return process, port
        except httpx.TransportError:
            time.sleep(0.5)
    stop(process)
    raise AssertionError(f"loraqa {shlex.join(argv)} did not come up:\n{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def send(curl: list[str], port: int) -> httpx.Response:
    """A page's `curl [-s] URL [-H 'K: V'] [-d BODY]` line, sent with httpx to the server on `port`."""
    url, headers, body = None, {}, None
    words = iter(curl[1:])
    for word in words:
        if word in ("-H", "--header"):
            key, value = next(words).split(":", 1)
            headers[key.strip()] = value.strip()
        elif word in ("-d", "--data"):
            body = next(words)
        elif word.startswith("http"):
            url = re.sub(r"127\.0\.0\.1:8000|localhost:8000", f"127.0.0.1:{port}", word)
        elif not word.startswith("-"):
            raise AssertionError(f"the docs test cannot send: {shlex.join(curl)}")
    assert url, f"no URL in {shlex.join(curl)}"
    if body is None:
        return httpx.get(url, headers=headers, timeout=120)
    json.loads(body)  # the page's JSON must be valid as written
    return httpx.post(url, headers=headers, content=body, timeout=120)


# --- running a page --------------------------------------------------------------------------------


def run_page(path: Path, models, files: dict[str, Path], workdir: Path, capsys) -> list[tuple[list[str], str]]:
    """Every command of the page, in order, from `workdir` (the caller chdirs there): [(argv, stdout)].

    `src` and `configs` in `workdir` point at the repository's, as in a clone's root."""
    from run_helpers import run_cli

    page = read_page(path)
    for name, text in page.files.items():
        (workdir / name).write_text(text, encoding="utf-8")
    for name in ("src", "configs"):
        if not (workdir / name).exists():
            (workdir / name).symlink_to(REPO / name)
    outputs, server = [], None
    try:
        for argv, env in page.commands:
            if argv[0] == "serve":
                server = serve(shrunk(argv, models, files, set(page.files)), env, workdir / "serve.log")
                outputs.append((argv, ""))
                continue
            saved = {key: os.environ.get(key) for key in env}
            os.environ.update(env)
            try:
                code, out, err = run_cli(capsys, *shrunk(argv, models, files, set(page.files)))
            finally:
                for key, value in saved.items():
                    os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
            assert code == 0, f"{path.name}: loraqa {shlex.join(argv)} failed:\n{err[-3000:]}"
            outputs.append((argv, out))
        if page.requests:
            assert server, f"{path.name}: curl lines without a `loraqa serve` before them"
            for curl in page.requests:
                response = send(curl, server[1])
                assert response.status_code == 200, f"{path.name}: {shlex.join(curl)}: {response.text}"
                outputs.append((curl, response.text))
    finally:
        if server:
            stop(server[0])
    return outputs
