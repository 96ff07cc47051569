"""The `loraqa` command: train, eval, predict, merge, report, serve, sweep.

Every user-fixable problem is a LoraqaError, printed as one line `loraqa: error: ...` with exit
status 2 and no traceback. Heavy imports happen inside the commands so `--help` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys

from loraqa.allocator import preload_plan, reexec_with_tcmalloc
from loraqa.cli_checks import check_before_loading, serve_settings, split_config_arg
from loraqa.cli_parser import build_parser, config_reference
from loraqa.console import bars_enabled, set_verbosity, verbosity
from loraqa.errors import LoraqaError


def entry() -> int:
    """The `loraqa` command: under tcmalloc when the system has it (see allocator.py), then main.
    Before that restart, the model-free checks run once, so a typo costs one interpreter start."""
    if preload_plan(dict(os.environ)) is not None:
        code = _check_only(sys.argv[1:])
        if code is not None:
            return code
    reexec_with_tcmalloc()
    return main()


def _check_only(argv: list[str]) -> int | None:
    """Exit status 2 after the one-line error of `argv`'s model-free checks; None when they pass."""
    args = parse_command_line(argv)  # --help, --version and usage errors end here too
    _console_settings(args)
    try:
        check_before_loading(args)
    except LoraqaError as exc:
        print(f"loraqa: error: {exc}", file=sys.stderr)
        return 2
    return None


def parse_command_line(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse `argv`, letting `key=value` overrides come before, between or after the flags
    (`loraqa train a=b --overwrite c=d`); an unknown flag is still an argparse error."""
    args, extras = build_parser().parse_known_args(argv)
    unknown = [item for item in extras if item.startswith("-") or "=" not in item]
    if unknown or (extras and not hasattr(args, "overrides")):
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown or extras)}")
    if extras:
        args.overrides = [*args.overrides, *extras]
    # Sweep workers re-run the same command line; resume notes quote it.
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_command_line(argv)
    _console_settings(args)
    try:
        return _dispatch(args)
    except LoraqaError as exc:
        _end_progress_bars()
        print(f"loraqa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _end_progress_bars()
        print("loraqa: interrupted", file=sys.stderr)
        for note in _interruption_notes(args):
            print(f"loraqa: {note}", file=sys.stderr)
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


def _interruption_notes(args) -> list[str]:
    from loraqa.cli_interrupt import interruption_notes

    config, overrides = split_config_arg(getattr(args, "config", None), getattr(args, "overrides", []))
    return interruption_notes(args.command, args.argv, config, overrides)


def _leave_process_group() -> None:
    """[ddp] A command run under torchrun ends by destroying its process group (see
    `distributed.leave_process_group`); commands that never imported torch have none to leave."""
    if "torch.distributed" in sys.modules:
        from loraqa.distributed import leave_process_group

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
    from loraqa.distributed import launched, world_size
    from loraqa.errors import LaunchError

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
        from loraqa.config.shipped import describe_shipped, show_config

        print(show_config(args.show) if args.show else describe_shipped(), end="" if args.show else "\n")
        return 0
    check_before_loading(args)  # config, files, flags and the hub: before torch, in well under a second
    _quiet_libraries()
    from loraqa.config.loader import load_config

    if args.command == "train":
        from loraqa.pipeline import run_training

        config_path, overrides = split_config_arg(args.config, args.overrides)
        summary = run_training(
            load_config(config_path, overrides),
            resume=args.resume,
            overwrite=args.overwrite,
            validation=True if args.validation else None,
            command=["loraqa", *args.argv],
        )
        from loraqa import distributed

        if not args.no_report and distributed.is_main():  # under torchrun, rank 0 alone writes the report
            _report_or_warn(summary["run_dir"])
        return 0
    if args.command == "eval":
        from loraqa.config.decoding import parse_decoding_list
        from loraqa.inference.eval_command import run_evaluation

        config_path, overrides = split_config_arg(args.config, args.overrides)
        if args.model and not args.adapter:
            overrides = [*overrides, f"model.name={args.model}"]
        config = load_config(config_path, overrides)
        decodings = parse_decoding_list(args.decoding) if args.decoding else [config.generation.decoding]
        run_evaluation(
            config,
            adapter=args.adapter,
            decodings=decodings,
            output=args.output,
            overwrite=args.overwrite,
            base_name=args.model,
            overrides=overrides,
        )
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
        target = run_export(
            args.adapter,
            args.format,
            args.output,
            args.overwrite,
            config,
            args.model,
            args.overrides,
            gguf_type=args.gguf_type,
            int8=args.int8,
            force=args.force,
        )
        print(f"{args.format} export written to {target} (see its README.md)")
        return 0
    raise AssertionError(args.command)


def _report_or_warn(directory: str) -> None:
    """Write the report of a finished run or comparison; a failure is a warning, the run stands."""
    from loraqa.reports import write_report

    try:
        paths = write_report(directory)
    except Exception as exc:  # noqa: BLE001 — the trained run must never fail for its report
        print(
            f"loraqa: warning: the report was not written ({type(exc).__name__}: {exc}); "
            f"`loraqa report {directory}` tries again",
            file=sys.stderr,
        )
        return
    print(f"report written to {paths.html} and {paths.markdown}")


def _predict(args, load_config) -> int:
    from loraqa.inference.answer import answer
    from loraqa.inference.predict import command_line_question, print_answers, read_questions
    from loraqa.inference.ready import load_for_answering

    # the flags were checked before anything loaded (cli_checks.py)
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
    ready = load_for_answering(config, args.adapter, base_name=args.model, overrides=args.overrides)
    print_answers(answer(ready, config, records, min_confidence=args.min_confidence), args.output)
    return 0


def _sweep(args) -> int:
    from loraqa.cli_checks import sweep_spec
    from loraqa.sweeps.worker import run_sweep

    spec = sweep_spec(args)
    summary = run_sweep(spec)  # None in a worker process: the parent reports
    if summary is not None and not args.no_report:
        _report_or_warn(str(spec.sweep_dir))
    return 0


def _compare(args) -> int:
    from loraqa.config.shipped import expand_compare_sets
    from loraqa.errors import FlagError
    from loraqa.experiments.compare import compare, compare_existing, is_finished_run
    from loraqa.runs.files import CHANGES_FILE, COMPARISON_FILE

    items = expand_compare_sets([*args.items, *args.overrides])  # `loraqa compare offline`: a shipped set
    finished = [i for i in items if is_finished_run(i)]
    if finished:  # finished runs are compared as they are: nothing trains
        if len(finished) != len(items):
            others = ", ".join(i for i in items if i not in finished)
            raise FlagError("compare", f"give either finished run directories or configs, not both ({others})")
        result = compare_existing(finished, args.name, root=args.dir, command=["loraqa", *args.argv], data=args.data)
        print(result.table)
        print(f"comparison written to {result.directory / COMPARISON_FILE} (fixed/broken questions: {CHANGES_FILE})")
        if not args.no_report:
            _report_or_warn(str(result.directory))
        return 0
    configs = [i for i in items if "=" not in i or i.endswith((".yaml", ".yml"))]
    overrides = [i for i in items if i not in configs]
    result = compare(configs, overrides, args.name, root=args.dir, command=["loraqa", *args.argv])
    print(result.table)
    print(f"comparison written to {result.directory / COMPARISON_FILE}")
    if not args.no_report:
        _report_or_warn(str(result.directory))
    return 0


def _merge(args, load_config) -> int:
    from loraqa.inference.merge import quantized_base_notice, write_merged
    from loraqa.inference.ready import load_for_answering
    from loraqa.lora.adapter_files import read_adapter_meta

    config = load_config(None, args.overrides)
    ready = load_for_answering(
        config, args.adapter, base_name=args.model, overrides=args.overrides, full_precision=True
    )
    target = write_merged(ready, args.output, args.overwrite)
    notice = quantized_base_notice(read_adapter_meta(args.adapter))  # loading never quantizes: say what was merged
    if notice:
        print(f"loraqa: {notice}", file=sys.stderr)
    print(f"merged model written to {target}")
    return 0


def _serve(args, load_config) -> int:
    from loraqa.serving.server import require_serving_extra, serve

    require_serving_extra()
    config = load_config(None, [*args.overrides, f"training.device={args.device}"])
    settings = serve_settings(args)
    return serve(args.adapter, config, settings, args.host, args.port, base_name=args.model, base_only=args.base_only)


# peft warnings a user can act on, kept as one-line notes; peft's others (it fixing a setting
# itself, embeddings saved with the adapter after add_tokens) are noise under our own messages.
PEFT_NOTES = (
    r"(?s).*missing adapter keys",
    r"(?s).*unexpected keys",
    r"(?s).*tie_word_embeddings",
)
_PEFT_MODULES = r"peft(\.|$)"


def _console_settings(args) -> None:
    """--quiet/--verbose, and the libraries' console output, set before any library is imported
    (they read these variables once, at import): bars only on a terminal, hub chatter off."""
    set_verbosity("quiet" if args.quiet else "verbose" if args.verbose else "normal")
    if not bars_enabled():
        os.environ["TQDM_DISABLE"] = "1"  # every tqdm bar: loraqa's evaluations, transformers' loading
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if not args.verbose:  # "Retrying in 1s [Retry 1/5]" and the like: loraqa says what went wrong itself
        os.environ.setdefault("HF_HUB_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _quiet_libraries() -> None:
    # Our own lines say what matters; library warnings (e.g. "newly initialized qa_outputs") are noise here.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    import transformers

    if not bars_enabled():  # also when transformers was imported before _console_settings ran
        transformers.utils.logging.disable_progress_bar()
    if verbosity() == "verbose":
        return

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
