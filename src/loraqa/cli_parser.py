"""The `loraqa` command line's grammar: every command, flag and help text (argparse), and the
config reference printed by `loraqa config` and under each command's --help. cli.py parses with
it and runs the commands; keeping the grammar apart keeps each file readable."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from loraqa import __version__
from loraqa.config import schema
from loraqa.config.validate import documented_ranges
from loraqa.serving.settings import ServeSettings

CONFIG_HELP = "YAML config file, or a shipped config's name (`loraqa configs`); optional, defaults in `loraqa config`"
OVERRIDES_HELP = "config overrides such as training.learning_rate=1e-4 lora.r=16 (section.key=value)"


def config_reference() -> str:
    """Every config key with its type and default, generated from the schema (never out of date)."""
    lines = ["config keys (section.key: type = default  [the sane range, where one is checked]):"]
    root = schema.RunConfig()
    ranges = documented_ranges()
    for f in dataclasses.fields(root):
        value = getattr(root, f.name)
        if dataclasses.is_dataclass(value):
            hints = typing.get_type_hints(type(value))
            for sub in dataclasses.fields(value):
                hint = type_text(hints[sub.name])
                key = f"{f.name}.{sub.name}"
                note = f"  [{ranges[key]}]" if key in ranges else ""
                lines.append(f"  {key}: {hint} = {getattr(value, sub.name)!r}{note}")
        else:
            lines.append(f"  {f.name} = {value!r}")
    return "\n".join(lines)


def type_text(hint) -> str:
    """A config type as a user writes values: `'auto' | 'fp32'`, `int | None`, `list[str]`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return " | ".join(repr(value) for value in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(arg) for arg in args)
    if origin is list:
        return f"list[{type_text(args[0])}]"
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loraqa", description="LoRA adapters for SQuAD-style question answering.")
    parser.add_argument("--version", action="version", version=f"loraqa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    train = sub.add_parser(
        "train",
        help="train an adapter, then evaluate it (and the base model) on the test split",
        description="Train a LoRA adapter as CONFIG says; evaluate the base model (baseline) and the adapter "
        "on the test split; print both rows and the run directory.",
        epilog=config_reference(),
        formatter_class=fmt,
    )
    train.add_argument("config", nargs="?", help=CONFIG_HELP)
    train.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    train.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace a finished or failed run in output_dir")
    train.add_argument("--no-report", action="store_true", help="skip writing report.html/report.md at the end")
    train.add_argument(
        "--validation",
        action="store_true",
        help="carve a validation split and score the adapter on it even when training reads none, as a sweep's "
        "trials do (the command a sweep records for each trial has it, so the rerun trains on the same questions)",
    )

    evaluate = sub.add_parser(
        "eval",
        help="evaluate a base model alone (zero-shot baseline) or with an adapter",
        description="Evaluate on the test split (data.test, data.test_samples): SQuAD EM/F1, ROUGE, losses; "
        "writes metrics.json, predictions.json, predictions.jsonl.",
        epilog=config_reference(),
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

    predict = sub.add_parser(
        "predict",
        help="answer a question about a context, or a JSONL file of them",
        description="Answer --question about --context (or every line of --input) with an adapter on its base, "
        "or with a base model alone; print the answer and its confidence (JSON lines for --input). Example: loraqa predict "
        "--adapter runs/minilm-l6-squad/adapter --question 'Who wrote it?' --context 'Ada wrote it in 1843.'",
    )
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
    predict.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="withhold answers whose (calibrated) confidence is below P, in [0, 1]: "
        '"abstained": true; the run\'s report suggests P for a target precision',
    )
    predict.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])

    merge = sub.add_parser(
        "merge",
        help="write base + adapter as one full model (safetensors)",
        description="Fold the adapter's LoRA weights into its base and write one plain transformers model "
        "(safetensors weights, config, tokenizer) to --output, loadable without peft or loraqa: "
        "loraqa merge --adapter runs/NAME/adapter --output merged/NAME",
    )
    merge.add_argument("--adapter", required=True, help="adapter directory")
    merge.add_argument("--output", required=True, help="directory for the merged model")
    merge.add_argument("--model", help="base model (default: the adapter's base)")
    merge.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    merge.add_argument(
        "overrides", nargs="*", help="settings for the base, e.g. model.trust_remote_code=true with --model"
    )

    export = sub.add_parser("export", help="write base + adapter for another runtime: ONNX, GGUF (llama.cpp, Ollama)")
    export.add_argument("--adapter", required=True, help="adapter directory")
    export.add_argument(
        "--format",
        required=True,
        choices=["onnx", "gguf", "gguf-lora"],
        help="onnx: ONNX Runtime; gguf: llama.cpp, Ollama (Llama-family); gguf-lora: the adapter alone "
        "for llama.cpp --lora (docs/deploy.md)",
    )
    export.add_argument("--output", required=True, help="directory to write (new or empty)")
    export.add_argument("--model", help="base model (default: the adapter's base)")
    export.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    export.add_argument("--gguf-type", default="f16", choices=["f32", "f16", "q8_0"], help="GGUF weight type")
    export.add_argument("--int8", action="store_true", help="ONNX: add OUTPUT/int8 if it keeps F1 within 1 point")
    export.add_argument("--force", action="store_true", help="with --int8: write it even when F1 drops more")
    export.add_argument("overrides", nargs="*", help="settings for the base, e.g. model.trust_remote_code=true")

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
        "--batch-window-ms",
        type=float,
        default=5.0,
        help="the most a question waits for others to batch with (only when the last batch had several)",
    )
    serve.add_argument("--max-context-chars", type=int, default=20_000, help="longer contexts get 413")
    serve.add_argument("--request-timeout-s", type=float, default=60.0, help="a request waiting longer gets 504")
    serve.add_argument(
        "--read-timeout-s",
        type=float,
        default=ServeSettings.read_timeout_s,
        help="a request's headers, then its body, must arrive within this (else the connection closes / 408)",
    )
    serve.add_argument(
        "--drain-timeout-s",
        type=float,
        default=ServeSettings.drain_timeout_s,
        help="on SIGTERM or Ctrl-C: how long queued and running questions get to be answered; the rest get 503",
    )
    serve.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    serve.add_argument(
        "--api-key",
        metavar="KEY",
        help="require 'Authorization: Bearer KEY' on every /v1 endpoint (default: env LORAQA_API_KEY; unset: open)",
    )
    serve.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help="allow POST/DELETE /v1/adapters with 'Authorization: Bearer TOKEN' (default: env LORAQA_ADMIN_TOKEN)",
    )
    serve.add_argument("--adapter-root", metavar="DIR", help="the directory runtime-loaded adapters must lie in")

    _add_sweep(sub, fmt)
    _add_compare(sub, fmt)
    sub.add_parser("config", help="print every config key with its type, default and allowed values")
    configs = sub.add_parser(
        "configs",
        help="list the shipped configs and comparison sets (loraqa train NAME runs one)",
        description="List the shipped configs (`loraqa train NAME`) and comparison sets (`loraqa compare SET "
        "--name NAME`), or print one config to save and edit: `loraqa configs --show NAME > my.yaml`.",
    )
    configs.add_argument("--show", metavar="NAME", help="print shipped config NAME (with its comments) to stdout")
    for command_parser in sub.choices.values():
        command_parser.set_defaults(command_parser=command_parser)  # its own usage line in errors
        _add_verbosity(command_parser)
    return parser


def _add_verbosity(command_parser: argparse.ArgumentParser) -> None:
    talk = command_parser.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="print results, warnings and errors only")
    talk.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show the libraries' own warnings and messages (transformers, peft, the hub)",
    )


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
    sweep.add_argument(
        "--space",
        nargs="+",
        default=[],
        metavar="KEY=DIST",
        help="loguniform(a,b), uniform(a,b), int(a,b) or choice(a,b,...)",
    )
    sweep.add_argument("--trials", type=int, help="configurations a search samples")
    sweep.add_argument("--seeds", type=int, default=1, help="train each configuration with N seeds")
    sweep.add_argument("--workers", type=int, default=1, help="trial processes on this machine")
    sweep.add_argument(
        "--storage", help="Optuna storage URL shared by workers (default sqlite file runs/NAME/study.db)"
    )
    sweep.add_argument("--metric", default="f1", help="validation metric: f1, exact_match, rougeL, eval_loss")
    sweep.add_argument(
        "--select",
        default="best",
        choices=("best", "one-se"),
        help="which configuration the sweep names best: the best mean (default), or one-se: the "
        "smallest (fewest trainable parameters) within one standard error of it",
    )
    sweep.add_argument("--prune", default="none", choices=["none", "median", "asha"])
    sweep.add_argument(
        "--prune-warmup",
        type=float,
        default=0.25,
        metavar="SHARE",
        help="share of each trial's steps in which no pruner stops it",
    )
    sweep.add_argument("--heartbeat", type=int, default=30, help="seconds between a trial's heartbeats")
    sweep.add_argument("--grace", type=int, help="seconds without heartbeat before a trial is retried (3 beats)")
    sweep.add_argument("--no-report", action="store_true", help="skip writing the sweep's report at the end")
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
    compare.add_argument(
        "--data",
        metavar="FILE",
        help="finished runs only: evaluate each run's adapter on this "
        "data file (its test questions) and compare them there, instead of on their own test rows",
    )
    compare.set_defaults(overrides=[])  # key=value after the flags too, as train and sweep take them
