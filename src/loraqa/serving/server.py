"""Run the app under uvicorn: what `loraqa serve` does after parsing its arguments."""

from __future__ import annotations

import importlib.util
import sys

from loraqa.config.schema import RunConfig
from loraqa.errors import FlagError, LoraqaError
from loraqa.serving.settings import ServeSettings

EXTRA_HINT = "loraqa serve needs the serving extra: pip install loraqa[serve]"


def require_serving_extra() -> None:
    """Stop with one line when FastAPI or uvicorn is not installed."""
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise LoraqaError(f"{EXTRA_HINT} ({', '.join(missing)} not installed)")


def serve(
    adapter_args: list[str], config: RunConfig, settings: ServeSettings, host: str, port: int,
    base_name: str | None = None, base_only: bool = False,
) -> int:  # fmt: skip
    require_serving_extra()
    import uvicorn

    from loraqa.serving.app import create_app
    from loraqa.serving.registry import build_registry, parse_adapter_arg

    if settings.max_batch < 1 or settings.batch_window_ms < 0 or settings.max_context_chars < 1:
        raise FlagError("--max-batch/--batch-window-ms/--max-context-chars", "must be positive (window may be 0)")
    sources = [parse_adapter_arg(text) for text in adapter_args]
    registry = build_registry(sources, config, base_name=base_name, base_only=base_only)
    for row in registry.describe():
        print(f"loraqa: serving '{row['name']}': {row['formulation']} on {row['base_model']}", file=sys.stderr)
    print(f"loraqa: listening on http://{host}:{port}/ (API docs at /docs)", file=sys.stderr, flush=True)
    uvicorn.run(create_app(registry, settings), host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    return 0
