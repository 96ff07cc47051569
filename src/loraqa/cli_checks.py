"""What the command line can check before torch or transformers is imported (seconds on a quiet
machine, a minute on a busy one): the config's keys, types, ranges and cross-key rules, the files
it names, the output directory, the flags that contradict each other, and whether a hub model can
be fetched at all. A mistake then costs well under a second; the checks that need the model's own
config (its positions, its layers) stay where the model is inspected.

Each check raises the same LoraqaError the later code would; this module never loads a model.
"""

from __future__ import annotations

import os
from pathlib import Path

from loraqa.config.loader import load_config
from loraqa.config.schema import RunConfig
from loraqa.errors import AdapterError, DataError, FlagError, RunDirError
from loraqa.input_files import MAX_DATA_FILE_BYTES, input_file_problem
from loraqa.models.hub_check import check_base_model


def check_before_loading(args) -> None:
    """Run the model-free checks of `args.command`; raise the first problem found."""
    check = _CHECKS.get(args.command)
    if check is not None:
        check(args)


def split_config_arg(config: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """`loraqa train key=value` (no file) puts an override where the config path would be."""
    if config is not None and "=" in config and not config.endswith((".yaml", ".yml")):
        return None, [config, *overrides]
    return config, overrides


def _train(args) -> None:
    config = load_config(*split_config_arg(args.config, args.overrides))
    _check_sources(config, (config.data.train, config.data.test, config.data.validation))
    from loraqa.runs.rundir import RunDirectory

    RunDirectory(config.run_dir).check_for_training(
        config, resume=args.resume, overwrite=args.overwrite, same_config=False
    )
    check_base_model(config.model.name, config.model.revision)


def _eval(args) -> None:
    path, overrides = split_config_arg(args.config, args.overrides)
    if args.model and not args.adapter:
        overrides = [*overrides, f"model.name={args.model}"]
    config = load_config(path, overrides)
    _check_sources(config, (config.data.test,))
    _check_model_source(args.adapter, args.model or (None if args.adapter else config.model.name), config)


def _predict(args) -> None:
    if bool(args.input) == bool(args.question or args.context):
        raise FlagError("--input/--question", "give either --question with --context, or --input FILE")
    if args.input is None and not (args.question and args.context):
        raise FlagError("--context", "--question needs --context (the text the answer comes from)")
    if args.output and os.path.lexists(args.output):  # a dangling link too
        raise FlagError("--output", f"{args.output} exists; choose a new file")
    if args.min_confidence is not None and not 0.0 <= args.min_confidence <= 1.0:
        raise FlagError("--min-confidence", f"{args.min_confidence} is not a probability in [0, 1]")
    if args.input and (problem := input_file_problem(args.input, MAX_DATA_FILE_BYTES)):
        raise DataError(args.input, problem)
    config = load_config(None, [*args.overrides, f"training.device={args.device}"])
    _check_model_source(args.adapter, args.model or (None if args.adapter else config.model.name), config)


def _merge(args) -> None:
    config = load_config(None, args.overrides)
    target = Path(args.output)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise RunDirError(f"{target} exists and is not a directory; give --output a new or empty directory")
    if target.is_dir() and any(target.iterdir()) and not args.overwrite:
        raise RunDirError(f"{target} is not empty; use --overwrite or another --output")
    _check_model_source(args.adapter, args.model, config)


def serve_settings(args):
    """`loraqa serve`'s flags as the server's settings (read once here: the checks and the command share it)."""
    from loraqa.serving.settings import ServeSettings

    return ServeSettings(
        max_batch=args.max_batch,
        batch_window_ms=args.batch_window_ms,
        max_context_chars=args.max_context_chars,
        request_timeout_s=args.request_timeout_s,
        read_timeout_s=args.read_timeout_s,
        drain_timeout_s=args.drain_timeout_s,
        api_key=args.api_key or os.environ.get("LORAQA_API_KEY") or None,
        admin_token=args.admin_token or os.environ.get("LORAQA_ADMIN_TOKEN") or None,
        adapter_root=args.adapter_root,
    )


def _serve(args) -> None:
    from loraqa.serving.server import check_settings, require_serving_extra
    from loraqa.serving.settings import parse_adapter_arg

    require_serving_extra()
    check_settings(serve_settings(args))
    config = load_config(None, [*args.overrides, f"training.device={args.device}"])
    for item in args.adapter:
        _check_model_source(str(parse_adapter_arg(item).directory), None, config)
    if args.base_only or not args.adapter:
        check_base_model(args.model or config.model.name, config.model.revision)


def _sweep(args) -> None:
    from loraqa.sweeps.spec import check_spec

    check_spec(sweep_spec(args))  # the shared config, the flags and every trial's config


def sweep_spec(args):
    """`loraqa sweep`'s arguments as the SweepSpec the sweep runs (and `_sweep` checks)."""
    from loraqa.sweeps.spec import SweepSpec

    config_path, overrides = split_config_arg(args.config, args.overrides)
    return SweepSpec(
        config=config_path,
        overrides=overrides,
        name=args.name,
        sweep_dir=Path(args.dir or f"runs/{args.name}"),
        grid=args.grid,
        search=args.search,
        space=args.space,
        trials=args.trials,
        seeds=args.seeds,
        workers=args.workers,
        storage=args.storage,
        metric=args.metric,
        select=args.select,
        prune=args.prune,
        prune_warmup=args.prune_warmup,
        heartbeat_interval=args.heartbeat,
        grace_period=args.grace,
        worker=args.worker,
        torch_threads=args.torch_threads,
        argv=args.argv,
    )


def _compare(args) -> None:
    from loraqa.config.shipped import expand_compare_sets

    items = expand_compare_sets([*args.items, *args.overrides])
    if any(Path(item).is_dir() for item in items):
        return  # finished runs: compared as they are (experiments/compare.py says what is wrong)
    if getattr(args, "data", None):
        raise FlagError("--data", "evaluates finished runs' adapters; configs are trained and tested on data.test")
    overrides = [item for item in items if "=" in item and not item.endswith((".yaml", ".yml"))]
    for item in items:
        if item not in overrides:
            load_config(item, overrides)


def _check_sources(config: RunConfig, sources) -> None:
    """A data file that is missing or not a plain file, named now rather than after the model loads."""
    from loraqa.data.bundled import is_bundled

    for source in sources:
        if not source or is_bundled(source) or source.startswith("hub:"):
            continue
        problem = input_file_problem(str(Path(source).expanduser()), MAX_DATA_FILE_BYTES)
        if problem:
            raise DataError(Path(source).expanduser(), problem)


def _check_model_source(adapter: str | None, base: str | None, config: RunConfig) -> None:
    if adapter is not None and not Path(adapter).is_dir():
        raise AdapterError(f"adapter directory not found: {adapter}")
    if base:
        check_base_model(base, config.model.revision)


_CHECKS = {
    "train": _train,
    "eval": _eval,
    "predict": _predict,
    "merge": _merge,
    "serve": _serve,
    "sweep": _sweep,
    "compare": _compare,
}
