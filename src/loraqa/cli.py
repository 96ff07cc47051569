"""The `loraqa` command: train, eval, predict, merge, report, serve, sweep.

Every user-fixable problem is a LoraqaError, printed as one line `loraqa: error: ...` with exit
status 2 and no traceback. Heavy imports happen inside the commands so `--help` is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

from loraqa.allocator import reexec_with_tcmalloc
from loraqa.config import schema
from loraqa.errors import LoraqaError

CONFIG_HELP = "YAML config file, or a shipped config's name (`loraqa configs`); optional, defaults in `loraqa config`"
OVERRIDES_HELP = "config overrides such as training.learning_rate=1e-4 lora.r=16 (section.key=value)"


def _config_reference() -> str:
    """Every config key with its type and default, generated from the schema (never out of date)."""
    lines = ["config keys (section.key: type = default):"]
    root = schema.RunConfig()
    for f in dataclasses.fields(root):
        value = getattr(root, f.name)
        if dataclasses.is_dataclass(value):
            hints = typing.get_type_hints(type(value))
            for sub in dataclasses.fields(value):
                hint = getattr(hints[sub.name], "__name__", None) or str(hints[sub.name]).replace("typing.", "")
                lines.append(f"  {f.name}.{sub.name}: {hint} = {getattr(value, sub.name)!r}")
        else:
            lines.append(f"  {f.name} = {value!r}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loraqa", description="LoRA adapters for SQuAD-style question answering.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    train = sub.add_parser(
        "train",
        help="train an adapter, then evaluate it (and the base model) on the test split",
        description="Train a LoRA adapter as CONFIG says; evaluate the base model (baseline) and the adapter "
        "on the test split; print both rows and the run directory.",
        epilog=_config_reference(),
        formatter_class=fmt,
    )
    train.add_argument("config", nargs="?", help=CONFIG_HELP)
    train.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    train.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace a finished or failed run in output_dir")
    train.add_argument("--no-report", action="store_true", help="skip writing report.html/report.md at the end")

    evaluate = sub.add_parser(
        "eval",
        help="evaluate a base model alone (zero-shot baseline) or with an adapter",
        description="Evaluate on the test split (data.test, data.test_samples): SQuAD EM/F1, ROUGE, losses; "
        "writes metrics.json, predictions.json, predictions.jsonl.",
        epilog=_config_reference(),
        formatter_class=fmt,
    )
    evaluate.add_argument("config", nargs="?", help=CONFIG_HELP)
    evaluate.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    evaluate.add_argument(
        "--adapter", help="adapter directory (runs/NAME/adapter); its training model settings are used"
    )
    evaluate.add_argument(
        "--model", help="base model name, hub id or directory (default: config or the adapter's base)"
    )
    evaluate.add_argument(
        "--decoding", default=None, help="comma list of decodings: greedy,beam4,topk50,topp0.95,temp1.3"
    )
    evaluate.add_argument("--output", help="output directory (default: next to the adapter, or runs/NAME/eval-base)")
    evaluate.add_argument(
        "--overwrite", action="store_true", help="replace an earlier evaluation in the output directory"
    )

    predict = sub.add_parser("predict", help="answer a question about a context, or a JSONL file of them")
    predict.add_argument(
        "overrides", nargs="*", help="generation/evaluation overrides, e.g. generation.max_new_tokens=16"
    )
    predict.add_argument("--adapter", help="adapter directory; omit to ask the base model alone")
    predict.add_argument("--model", help="base model (default: the adapter's base, else model.name's default)")
    predict.add_argument("--question", help="the question")
    predict.add_argument("--context", help="the context the answer is taken from")
    predict.add_argument("--input", help='JSONL file: one {"id", "question", "context"} per line')
    predict.add_argument("--output", help="write JSONL answers here instead of stdout (must not exist)")
    predict.add_argument("--decoding", help="greedy (default), beamN, topkK, toppP or tempT")
    predict.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])

    merge = sub.add_parser("merge", help="write base + adapter as one full model (safetensors)")
    merge.add_argument("--adapter", required=True, help="adapter directory")
    merge.add_argument("--output", required=True, help="directory for the merged model")
    merge.add_argument("--model", help="base model (default: the adapter's base)")
    merge.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    merge.add_argument(
        "overrides", nargs="*", help="settings for the base, e.g. model.trust_remote_code=true with --model"
    )

    report = sub.add_parser(
        "report",
        help="write report.html and report.md (with plots) for a run or a directory of runs",
        description="Read a run directory (it holds config.yaml) or a directory of run directories and write "
        "DIR/report.html (self-contained, opens offline), DIR/report.md and DIR/report_files/*.png.",
    )
    report.add_argument("dir", metavar="DIR", help="a run directory, or a directory whose subdirectories are runs")

    serve = sub.add_parser("serve", help="answer questions over HTTP and in a web page, with one or more adapters")
    serve.add_argument("overrides", nargs="*", help="generation/evaluation overrides, as for predict")
    serve.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="serve this adapter as NAME (repeat for more; the first is the default)",
    )
    serve.add_argument("--base-only", action="store_true", help="also serve the base model alone, as adapter 'base'")
    serve.add_argument("--model", help="base model (default: each adapter's base; with --base-only, the base served)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--max-batch", type=int, default=16, help="questions per model call and per request; 1 turns batching off"
    )
    serve.add_argument(
        "--batch-window-ms", type=float, default=5.0, help="how long a question waits for others to batch with"
    )
    serve.add_argument("--max-context-chars", type=int, default=20_000, help="longer contexts get 413")
    serve.add_argument("--request-timeout-s", type=float, default=60.0, help="a request waiting longer gets 504")
    serve.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])

    _add_sweep(sub, fmt)
    _add_compare(sub, fmt)
    sub.add_parser("config", help="print every config key with its default")
    sub.add_parser("configs", help="list the shipped configs (loraqa train NAME runs one)")
    for command_parser in sub.choices.values():
        command_parser.set_defaults(command_parser=command_parser)  # its own usage line in errors
    return parser


def _add_sweep(sub, fmt) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="run a grid or a search over configs as one Optuna study (each trial exactly once, resumable)",
        description="Train every cell of --grid (or --trials samples of --space) as ordinary runs under "
        "runs/NAME/, chosen on validation; re-run the same command to finish an interrupted sweep. "
        "Overrides go right after CONFIG, before --grid.",
        formatter_class=fmt,
    )
    sweep.add_argument("config", nargs="?", help=CONFIG_HELP)
    sweep.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + ", shared by every trial")
    sweep.add_argument("--name", required=True, help="sweep (and Optuna study) name")
    sweep.add_argument("--dir", help="sweep directory (default runs/NAME)")
    sweep.add_argument("--grid", nargs="+", default=[], metavar="KEY=V1,V2", help="grid axes, e.g. lora.r=4,8")
    sweep.add_argument("--search", choices=["tpe", "random"], help="sample --trials configurations from --space")
    sweep.add_argument("--space", nargs="+", default=[], metavar="KEY=DIST",
                       help="loguniform(a,b), uniform(a,b), int(a,b) or choice(a,b,...)")  # fmt: skip
    sweep.add_argument("--trials", type=int, help="configurations a search samples")
    sweep.add_argument("--seeds", type=int, default=1, help="train each configuration with N seeds")
    sweep.add_argument("--workers", type=int, default=1, help="trial processes on this machine")
    sweep.add_argument(
        "--storage", help="Optuna storage URL shared by workers (default sqlite file runs/NAME/study.db)"
    )
    sweep.add_argument("--metric", default="f1", help="validation metric: f1, exact_match, rougeL, eval_loss")
    sweep.add_argument("--prune", default="none", choices=["none", "median", "asha"])
    sweep.add_argument("--heartbeat", type=int, default=30, help="seconds between a trial's heartbeats")
    sweep.add_argument("--grace", type=int, help="seconds without heartbeat before a trial is retried (3 beats)")
    sweep.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    sweep.add_argument("--torch-threads", type=int, help=argparse.SUPPRESS)


def _add_compare(sub, fmt) -> None:
    compare = sub.add_parser(
        "compare",
        help="train several configs on identical questions and print them side by side (best on validation)",
        description="Train and evaluate each CONFIG (with the shared key=value overrides) on identical "
        "train/validation/test questions and decoding, as runs under DIR/NAME/; print one table, mark the best "
        "on validation F1, write DIR/NAME/comparison.json and the report. Re-run the same command to finish "
        "an interrupted comparison: finished runs are re-used, a started one resumes.",
        formatter_class=fmt,
    )
    compare.add_argument(
        "items", nargs="+", metavar="CONFIG|key=value", help="two or more configs, then shared overrides"
    )
    compare.add_argument("--name", required=True, help="comparison name: its runs go under DIR/NAME/")
    compare.add_argument("--dir", default="runs", help="parent directory (default runs)")
    compare.add_argument("--no-report", action="store_true", help="skip writing the report at the end")


def entry() -> int:
    """The `loraqa` command: under tcmalloc when the system has it (see allocator.py), then main."""
    reexec_with_tcmalloc()
    return main()


def parse_command_line(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse `argv`, letting `key=value` overrides come before, between or after the flags
    (`loraqa train a=b --overwrite c=d`); an unknown flag is still an argparse error."""
    args, extras = _parser().parse_known_args(argv)
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
        print(f"loraqa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loraqa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`loraqa configs | head`): not an error to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the interpreter's final flush is quiet
        return 0


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
        print(_config_reference())
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
            command=["loraqa", *args.argv],
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
    print_answers(answer(ready, config, records), args.output)
    return 0


def _sweep(args) -> int:
    from pathlib import Path

    from loraqa.sweeps.worker import SweepSpec, run_sweep

    config_path, overrides = _split_config_arg(args.config, args.overrides)
    spec = SweepSpec(
        config=config_path, overrides=overrides, name=args.name, sweep_dir=Path(args.dir or f"runs/{args.name}"),
        grid=args.grid, search=args.search, space=args.space, trials=args.trials, seeds=args.seeds,
        workers=args.workers, storage=args.storage, metric=args.metric, prune=args.prune,
        heartbeat_interval=args.heartbeat, grace_period=args.grace, worker=args.worker,
        torch_threads=args.torch_threads, argv=args.argv,
    )  # fmt: skip
    run_sweep(spec)
    return 0


def _compare(args) -> int:
    from loraqa.experiments.compare import compare

    items = [*args.items, *getattr(args, "overrides", [])]
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
    ready = _ready(config, args.adapter, args.model, _model_keys(args.overrides))
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
    )  # fmt: skip
    return serve(args.adapter, config, settings, args.host, args.port, base_name=args.model, base_only=args.base_only)


def _ready(config, adapter: str | None, base_name: str | None, model_overrides: frozenset[str] = frozenset()):
    from loraqa.inference.ready import load_ready_model, model_config_for_adapter
    from loraqa.models.loading import inspect_base
    from loraqa.device import plan_device

    if adapter:
        model_config = model_config_for_adapter(adapter, config.model, base_name, model_overrides)
    else:
        model_config = config.model
    spec = inspect_base(model_config)
    plan = plan_device(config.training.device, config.training.precision, spec.model_type)
    return load_ready_model(model_config, plan, adapter, spec=spec)


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
