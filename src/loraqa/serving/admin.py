"""Adapters loaded and unloaded while the server runs: POST /v1/adapters, DELETE /v1/adapters/{name}.

Off unless the server has an admin token (`--admin-token` or LORAQA_ADMIN_TOKEN) and an
`--adapter-root`; a request needs `Authorization: Bearer <admin token>` (401 otherwise; with no
admin token configured every request is 403). The path a client names is resolved (links followed)
and must lie inside the adapter root (403 otherwise), so the filesystem a client reaches is the one
the operator chose. The adapter goes through `build_registry`, the checks `predict`'s loading makes,
in a thread of its own: the event loop and the model worker keep answering the other adapters while
it loads. A failed load is a one-line 4xx and changes nothing.

A runtime adapter whose base is already loaded unmerged (two or more adapters on it, or an
adapter and `--base-only`) joins it as one more peft adapter, and mixes into its batches; attaching
runs in the model's worker thread (`Batcher.in_worker`), between model calls, never during one.
Otherwise it gets a base of its own (a merged single adapter cannot take another). Unloading drops
the registry's references and deletes the adapter's weights from a shared base (in the worker
thread too); when the last adapter of a base goes, the base is freed (collected, and the allocator
asked to return the memory).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
from pathlib import Path

from fastapi import Body, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, StrictStr

from loraqa.errors import LoraqaError
from loraqa.serving.auth import bearer_token, token_matches
from loraqa.serving.errors import ServeError
from loraqa.serving.registry import Registry, ServedAdapter, build_registry
from loraqa.serving.settings import AdapterSource, parse_adapter_arg


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    path: StrictStr


def add_admin_routes(app: FastAPI, registry: Registry, admin_token: str | None, adapter_root: str | None) -> None:
    lock = asyncio.Lock()  # one change at a time: two loads of one name cannot both win

    def authorize(request: Request) -> None:
        if admin_token is None or adapter_root is None:
            raise ServeError(
                403, "runtime adapter loading is off: start the server with --admin-token and --adapter-root"
            )
        if not token_matches(bearer_token(dict(request.scope.get("headers", ()))), admin_token):
            raise ServeError(401, "missing or wrong admin token: send Authorization: Bearer <admin token>")

    @app.post("/v1/adapters", status_code=201, dependencies=[Depends(authorize)])  # the token before the body
    async def load(request: Request, body: LoadRequest = Body(...)):
        """Load an adapter (a directory under --adapter-root) and serve it as `name`."""
        try:
            source = parse_adapter_arg(f"{body.name}=x")
        except LoraqaError as exc:
            raise ServeError(422, f"name: {str(exc).split(': ', 1)[-1]}") from None
        directory = confined(body.path, adapter_root)
        async with lock:
            if source.name in registry.adapters:
                raise ServeError(409, f"adapter {source.name!r} is already served; DELETE it first")
            try:
                loaded = await _load(request.app.state.batcher, registry, AdapterSource(source.name, directory))
            except LoraqaError as exc:
                raise ServeError(422, f"cannot load {body.path[:200]!r}: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - whatever a broken adapter raises: the client's 4xx
                raise ServeError(
                    422, f"cannot load {body.path[:200]!r}: {type(exc).__name__}: {str(exc)[:200]}"
                ) from None
            registry.serve(loaded)
        request.state.adapter = source.name
        return {"adapter": next(a for a in registry.describe() if a["name"] == source.name)}

    @app.delete("/v1/adapters/{name}", dependencies=[Depends(authorize)])
    async def unload(request: Request, name: str):
        """Stop serving `name`; its base is freed when no other adapter uses it."""
        async with lock:
            if name not in registry.adapters:
                raise ServeError(404, f"unknown adapter {name[:80]!r}")
            if len(registry.adapters) == 1:
                raise ServeError(409, "the last adapter cannot be unloaded: load another first")
            forgotten = registry.forget(name)
            await request.app.state.batcher.in_worker(registry.leave, forgotten)
            del forgotten
            await asyncio.to_thread(release_memory)
        return {"unloaded": name}


async def _load(batcher, registry: Registry, source: AdapterSource) -> ServedAdapter:
    """The adapter loaded, not yet served: joined to its loaded base in the worker thread, or on a
    base of its own loaded in a thread of its own (the model worker keeps answering meanwhile)."""
    plan = await asyncio.to_thread(registry.joining_plan, source)
    if plan is not None:
        return await batcher.in_worker(registry.join, source, plan)
    loaded = await asyncio.to_thread(build_registry, [source], registry.config)
    return loaded.adapters[source.name]


def confined(path: str, root: str) -> Path:
    """The directory `path` (relative to the root, or absolute) names, if it lies inside the root; else 403."""
    base = Path(root).resolve()
    target = (base / path).resolve()
    if target != base and base not in target.parents:
        raise ServeError(403, f"{path[:200]!r} is outside the adapter root")
    return target


def release_memory() -> None:
    """Collect the dropped model and hand freed memory back to the system (glibc or tcmalloc)."""
    gc.collect()
    libc = ctypes.CDLL(None)
    for symbol, args in (("MallocExtension_ReleaseFreeMemory", ()), ("malloc_trim", (0,))):
        function = getattr(libc, symbol, None)
        if function is not None:
            function(*args)
