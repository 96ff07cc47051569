"""The `loraqa` command: train, eval, predict, merge, report, serve, sweep.

Every user-fixable problem is a LoraqaError, printed as one line `loraqa: error: ...` with exit
status 2 and no traceback. Heavy imports happen inside the commands so `--help` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys

from loraqa.allocator import reexec_with_tcmalloc
from loraqa.cli_parser import build_parser, config_reference
from loraqa.errors import LoraqaError


def entry() -> int:
    """The `loraqa` command: under tcmalloc when the system has it (see allocator.py), then main."""
    reexec_with_tcmalloc()
    return main()


def parse_command_line(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse `argv`, letting `key=value` overrides come before, between or after the flags
    (`loraqa train a=b --overwrite c=d`); an unknown flag is still an argparse error."""
    args, extras = build_parser().parse_known_args(argv)
    unknown = [item for item in extras if item.startswith("-") or "=" not in item]
    if unknown or (extras and not hasattr(args, "overrides")):
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown or extras)}")
    if extras:
        args.overrides = [*args.overrides, *extras]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_command_line(argv)
    args.argv = argv  # sweep workers re-run the same command line
    try:
        return _dispatch(args)
    except LoraqaError as exc:
        _end_progress_bars()
        print(f"loraqa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loraqa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`loraqa configs | head`): not an error to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the interpreter's final flush is quiet
        return 0
    finally:
        _leave_process_group()


def _end_progress_bars() -> None:
    """Close the progress bars an error cut short (training's, an evaluation's), so the error line
    starts a line of its own instead of continuing the bar's unfinished one."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def _leave_process_group() -> None:
    """[ddp] A command run under torchrun ends by destroying its process group (see
    `distributed.leave_process_group`); commands that never imported torch have none to leave."""
    if "torch.distributed" in sys.modules:
        from loraqa.training.distributed import leave_process_group

        leave_process_group()


# Commands that are one process by nature, refused under a multi-process launcher before anything
# loads: N ranks would each run all of it and write the same files (or bind the same port).
ONE_PROCESS = {
    "sweep": "a sweep runs each trial as one process and spreads trials itself: run it without the launcher, "
    "with --workers N on one machine or the same command on several machines sharing --storage",
    "compare": "a comparison trains its runs one after another in one process: run it without the launcher "
    "(or train each config with `torchrun ... -m loraqa train`)",
    "predict": "predict answers in one process: run it without the launcher "
    "(`torchrun ... -m loraqa eval` spreads a test set over processes)",
    "merge": "merge writes one model from one process: run it without the launcher",
    "export": "export writes one model from one process: run it without the launcher",
    "serve": "a server is one process per port: run it without the launcher (one `loraqa serve --port P` per GPU)",
    "report": "report reads the run's files and writes one report: run it without the launcher",
}


def _refuse_under_launcher(command: str) -> None:
    """Raise LaunchError when a one-process command was started as one of several processes."""
    if command not in ONE_PROCESS or "WORLD_SIZE" not in os.environ:  # no launcher: no torch import needed
        return
    from loraqa.errors import LaunchError
    from loraqa.training.distributed import launched, world_size

    if launched():
        raise LaunchError(f"loraqa {command} started as {world_size()} processes (torchrun?); {ONE_PROCESS[command]}")


def _dispatch(args) -> int:
    _refuse_under_launcher(args.command)
    if args.command == "config":
        print(config_reference())
        return 0
    if args.command == "report":  # reads files only: no model libraries to quiet or load
        from loraqa.reports import write_report

        paths = write_report(args.dir)
        print(f"report written to {paths.html} and {paths.markdown}")
        return 0
    if args.command == "configs":
        from loraqa.config.shipped import describe_shipped

        print(describe_shipped())
        return 0
    _quiet_libraries()
    from loraqa.config.loader import load_config

    if args.command == "train":
        from loraqa.pipeline import run_training

        config_path, overrides = _split_config_arg(args.config, args.overrides)
        summary = run_training(
            load_config(config_path, overrides), resume=args.resume, overwrite=args.overwrite,
            validation=True if args.validation else None, command=["loraqa", *args.argv],
        )  # fmt: skip
        from loraqa.training import distributed

        if not args.no_report and distributed.is_main():  # under torchrun, rank 0 alone writes the report
            _report_or_warn(summary["run_dir"])
        return 0
    if args.command == "eval":
        from loraqa.config.decoding import parse_decoding_list
        from loraqa.pipeline.eval import run_evaluation

        config_path, overrides = _split_config_arg(args.config, args.overrides)
        if args.model and not args.adapter:
            overrides = [*overrides, f"model.name={args.model}"]
        config = load_config(config_path, overrides)
        decodings = parse_decoding_list(args.decoding) if args.decoding else [config.generation.decoding]
        run_evaluation(
            config, adapter=args.adapter, decodings=decodings, output=args.output,
            overwrite=args.overwrite, base_name=args.model, model_overrides=_model_keys(overrides),
        )  # fmt: skip
        return 0
    if args.command == "predict":
        return _predict(args, load_config)
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "compare":
        return _compare(args)
    if args.command == "merge":
        return _merge(args, load_config)
    if args.command == "serve":
        return _serve(args, load_config)
    if args.command == "export":
        from loraqa.export.command import run_export

        config = load_config(None, args.overrides)
        target = run_export(args.adapter, args.format, args.output, args.overwrite, config, args.model,
                            _model_keys(args.overrides), gguf_type=args.gguf_type, int8=args.int8,
                            force=args.force)  # fmt: skip
        print(f"{args.format} export written to {target} (see its README.md)")
        return 0
    raise AssertionError(args.command)


def _report_or_warn(directory: str) -> None:
    """Write the report of a finished run or comparison; a failure is a warning, the run stands."""
    from loraqa.reports import write_report

    try:
        paths = write_report(directory)
    except Exception as exc:  # noqa: BLE001 — the trained run must never fail for its report
        print(f"loraqa: warning: the report was not written ({type(exc).__name__}: {exc}); "
              f"`loraqa report {directory}` tries again", file=sys.stderr)  # fmt: skip
        return
    print(f"report written to {paths.html} and {paths.markdown}")


def _predict(args, load_config) -> int:
    from loraqa.errors import FlagError
    from loraqa.inference.predict import answer, command_line_question, print_answers, read_questions

    if bool(args.input) == bool(args.question or args.context):
        raise FlagError("--input/--question", "give either --question with --context, or --input FILE")
    if args.input is None and not (args.question and args.context):
        raise FlagError("--context", "--question needs --context (the text the answer comes from)")
    if args.output and os.path.lexists(args.output):  # a dangling link too
        raise FlagError("--output", f"{args.output} exists; choose a new file")
    if args.min_confidence is not None and not 0.0 <= args.min_confidence <= 1.0:
        raise FlagError("--min-confidence", f"{args.min_confidence} is not a probability in [0, 1]")
    overrides = [*args.overrides, f"training.device={args.device}"]
    if args.decoding:
        overrides.append(f"generation.decoding={args.decoding}")
    if args.model and not args.adapter:
        overrides.append(f"model.name={args.model}")
    config = load_config(None, overrides)
    # The inputs are checked as the data layer checks a data file, before any model loads.
    if args.input:
        records = read_questions(args.input, config.data)
    else:
        records = [command_line_question(args.question, args.context, config.data)]
    ready = _ready(config, args.adapter, args.model, _model_keys(args.overrides))
    print_answers(answer(ready, config, records, min_confidence=args.min_confidence), args.output)
    return 0


def _sweep(args) -> int:
    from pathlib import Path

    from loraqa.sweeps.worker import SweepSpec, run_sweep

    config_path, overrides = _split_config_arg(args.config, args.overrides)
    spec = SweepSpec(
        config=config_path, overrides=overrides, name=args.name, sweep_dir=Path(args.dir or f"runs/{args.name}"),
        grid=args.grid, search=args.search, space=args.space, trials=args.trials, seeds=args.seeds,
        workers=args.workers, storage=args.storage, metric=args.metric, select=args.select, prune=args.prune,
        prune_warmup=args.prune_warmup, heartbeat_interval=args.heartbeat, grace_period=args.grace, worker=args.worker,
        torch_threads=args.torch_threads, argv=args.argv,
    )  # fmt: skip
    run_sweep(spec)
    return 0


def _compare(args) -> int:
    from loraqa.errors import FlagError
    from loraqa.experiments.compare import compare, compare_existing, is_finished_run

    items = [*args.items, *getattr(args, "overrides", [])]
    finished = [i for i in items if is_finished_run(i)]
    if finished:  # finished runs are compared as they are: nothing trains
        if len(finished) != len(items):
            others = ", ".join(i for i in items if i not in finished)
            raise FlagError("compare", f"give either finished run directories or configs, not both ({others})")
        result = compare_existing(finished, args.name, root=args.dir, command=["loraqa", *args.argv])
        print(result.table)
        print(f"comparison written to {result.directory / 'comparison.json'} (fixed/broken questions: changes.jsonl)")
        if not args.no_report:
            _report_or_warn(str(result.directory))
        return 0
    configs = [i for i in items if "=" not in i or i.endswith((".yaml", ".yml"))]
    overrides = [i for i in items if i not in configs]
    result = compare(configs, overrides, args.name, root=args.dir, command=["loraqa", *args.argv])
    print(result.table)
    print(f"comparison written to {result.directory / 'comparison.json'}")
    if not args.no_report:
        _report_or_warn(str(result.directory))
    return 0


def _merge(args, load_config) -> int:
    from loraqa.inference.merge import quantized_base_notice, write_merged
    from loraqa.lora.adapter_files import read_adapter_meta

    config = load_config(None, args.overrides)
    ready = _ready(config, args.adapter, args.model, _model_keys(args.overrides), full_precision=True)
    target = write_merged(ready, args.output, args.overwrite)
    notice = quantized_base_notice(read_adapter_meta(args.adapter))  # loading never quantizes: say what was merged
    if notice:
        print(f"loraqa: {notice}", file=sys.stderr)
    print(f"merged model written to {target}")
    return 0


def _serve(args, load_config) -> int:
    from loraqa.serving.server import require_serving_extra, serve
    from loraqa.serving.settings import ServeSettings

    require_serving_extra()
    config = load_config(None, [*args.overrides, f"training.device={args.device}"])
    settings = ServeSettings(
        max_batch=args.max_batch, batch_window_ms=args.batch_window_ms,
        max_context_chars=args.max_context_chars, request_timeout_s=args.request_timeout_s,
        read_timeout_s=args.read_timeout_s, drain_timeout_s=args.drain_timeout_s,
    )  # fmt: skip
    return serve(args.adapter, config, settings, args.host, args.port, base_name=args.model, base_only=args.base_only)


def _ready(config, adapter: str | None, base_name: str | None, model_overrides: frozenset[str] = frozenset(),
           full_precision: bool = False):  # fmt: skip
    from loraqa.inference.ready import load_ready_model, model_config_for_adapter
    from loraqa.models.loading import inspect_base
    from loraqa.device import plan_device

    if adapter:
        model_config = model_config_for_adapter(adapter, config.model, base_name, model_overrides)
    else:
        model_config = config.model
    spec = inspect_base(model_config)
    plan = plan_device(config.training.device, config.training.precision, spec.model_type)
    return load_ready_model(model_config, plan, adapter, spec=spec, full_precision=full_precision)


def _model_keys(overrides: list[str]) -> frozenset[str]:
    """The model.* keys the command line sets (what an adapter's own settings may meet)."""
    keys = (item.partition("=")[0].strip() for item in overrides if "=" in item)
    return frozenset(key[len("model.") :] for key in keys if key.startswith("model."))


def _split_config_arg(config: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """`loraqa train key=value` (no file) puts an override where the config path would be."""
    if config is not None and "=" in config and not config.endswith((".yaml", ".yml")):
        return None, [config, *overrides]
    return config, overrides


# peft warnings a user can act on, kept as one-line notes; peft's others (it fixing a setting
# itself, embeddings saved with the adapter after add_tokens) are noise under our own messages.
PEFT_NOTES = (
    r"(?s).*missing adapter keys",
    r"(?s).*unexpected keys",
    r"(?s).*tie_word_embeddings",
)
_PEFT_MODULES = r"peft(\.|$)"


def _quiet_libraries() -> None:
    # Our own lines say what matters; library warnings (e.g. "newly initialized qa_outputs") are noise here.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecations inside transformers/peft
    warnings.filterwarnings("ignore", module=_PEFT_MODULES)
    for pattern in PEFT_NOTES:  # inserted in front of the ignore above, so these win
        warnings.filterwarnings("default", message=pattern, module=_PEFT_MODULES)
    if not getattr(warnings.showwarning, "loraqa_notes", False):
        warnings.showwarning = _peft_as_notes(warnings.showwarning)

    transformers.logging.set_verbosity_error()


def _peft_as_notes(show):
    """Wrap `warnings.showwarning` so a kept peft warning prints as `loraqa: note: peft: ...`
    on one line, without the source line; every other warning goes to `show` unchanged."""

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if f"{os.sep}peft{os.sep}" not in filename:
            return show(message, category, filename, lineno, file, line)
        text = " ".join(str(message).split())
        print(f"loraqa: note: peft: {text}", file=file or sys.stderr)

    showwarning.loraqa_notes = True
    return showwarning


if __name__ == "__main__":
    sys.exit(main())
