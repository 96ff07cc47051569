"""Run the app under uvicorn: what `loraqa serve` does after parsing its arguments."""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import sys

from loraqa.config.schema import RunConfig
from loraqa.errors import FlagError, LoraqaError
from loraqa.serving.settings import ServeSettings

EXTRA_HINT = "loraqa serve needs the serving extra: pip install loraqa[serve]"
SHUTDOWN_MARGIN_S = 5  # after the drain timeout: time to write the 503s before uvicorn cancels anything


def require_serving_extra() -> None:
    """Stop with one line when FastAPI or uvicorn is not installed."""
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise LoraqaError(f"{EXTRA_HINT} ({', '.join(missing)} not installed)")


def serve(
    adapter_args: list[str],
    config: RunConfig,
    settings: ServeSettings,
    host: str,
    port: int,
    base_name: str | None = None,
    base_only: bool = False,
) -> int:
    """Serve until SIGTERM or Ctrl-C, then shut down gracefully (`graceful_server`); 0 when it did."""
    require_serving_extra()
    from loraqa.serving.app import create_app
    from loraqa.serving.registry import build_registry
    from loraqa.serving.settings import parse_adapter_arg

    check_settings(settings)
    sources = [parse_adapter_arg(text) for text in adapter_args]
    registry = build_registry(sources, config, base_name=base_name, base_only=base_only)
    for row in registry.describe():
        print(f"loraqa: serving '{row['name']}': {row['formulation']} on {row['base_model']}", file=sys.stderr)
    _log_requests()
    auth = "bearer key required on /v1" if settings.api_key else "no API key"
    print(
        f"loraqa: listening on http://{host}:{port}/ (API docs at /docs, OpenAI API at /v1, metrics at /metrics; "
        f"{auth})",
        file=sys.stderr,
        flush=True,
    )
    app = create_app(registry, settings)
    graceful_server(app, settings, host, port).run()
    if app.state.batcher.busy:
        # A model call cannot be stopped halfway, and Python waits for its thread at exit: every
        # request has had its answer or its 503, so leave now, as the drain timeout promises.
        print("loraqa: drain timeout reached with a model call running; exiting without it", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _log_requests() -> None:
    """One stderr line per request (auth.py writes it): its id, method, endpoint, status, time, adapter."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("loraqa: %(message)s"))
    logger = logging.getLogger("loraqa.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def graceful_server(app, settings: ServeSettings, host: str, port: int):
    """A uvicorn server whose SIGTERM/Ctrl-C drains instead of failing what is in flight.

    On the signal uvicorn stops accepting connections and closes idle ones; the batcher refuses new
    questions (503) and answers the queued and running ones; whatever is unanswered after
    `settings.drain_timeout_s` gets a JSON 503. uvicorn's own cancel-after-timeout (a plain-text
    500) is set beyond that, so it never fires first. A second Ctrl-C quits at once.
    """
    import uvicorn

    from loraqa.serving.protocol import timed_protocol

    class GracefulServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            # Not uvicorn's own: it re-raises the signal after shutdown, which would end a clean drain
            # with "killed by SIGTERM" instead of exit 0.
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
                return
            self.should_exit = True
            app.state.batcher.drain_threadsafe(settings.drain_timeout_s)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=timed_protocol(settings.read_timeout_s),
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s) + SHUTDOWN_MARGIN_S,
    )
    return GracefulServer(config)


def check_settings(settings: ServeSettings) -> None:
    """The flags' values, refused before anything loads (cli_checks.py calls it too)."""
    if settings.max_batch < 1 or settings.batch_window_ms < 0 or settings.max_context_chars < 1:
        raise FlagError("--max-batch/--batch-window-ms/--max-context-chars", "must be positive (window may be 0)")
    if settings.drain_timeout_s < 0 or not math.isfinite(settings.drain_timeout_s):
        raise FlagError("--drain-timeout-s", f"must be a number of seconds >= 0, not {settings.drain_timeout_s}")
    if not 0 < settings.read_timeout_s < math.inf:
        raise FlagError("--read-timeout-s", f"must be a positive number of seconds, not {settings.read_timeout_s}")
