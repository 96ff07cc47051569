"""Seeds' pipeline vs loraqa, side by side in one invocation on one machine.

    .venv/bin/python bench/speed.py            # smollm2-135m, minilm-l6, tiny-t5 (default sizes below)
    .venv/bin/python bench/speed.py --quick    # smoke check, a few examples per model
    .venv/bin/python bench/speed.py --growth --no-compare   # growth only: 1k/2k/4k questions, 128-512 tokens
    .venv/bin/python bench/speed.py --models minilm-l6 --train 2000 --eval 500   # one model, other sizes
    .venv/bin/python bench/speed.py --upper-half   # also loraqa with LoRA on the upper half of the layers
    .venv/bin/python bench/speed.py --dev-paragraphs   # dev questions as whole paragraphs (~5 per context)
    .venv/bin/python bench/speed.py --train-paragraphs # train questions as whole paragraphs, as full SQuAD
    .venv/bin/python bench/speed.py --ddp 2            # 1 process x 2 threads vs 2 torchrun processes x 1 thread

Expected duration on this project's 2-core CPU (measured 2026-11-24): the default run ~15 min when
the machine is otherwise idle (25 min measured while another process shared the CPU for a while);
--quick ~2.5 min; --growth with the default 1k/2k/4k sizes ~20 min (10.4 min measured for 500/1k/2k
with 128 windows per length). Scale with --train/--eval to fill a longer slot: time is linear in both.

For each model it trains LoRA twice on the same SQuAD v1.1 train questions with the same LoRA config
and optimiser settings: (a) the seeds' pipeline rebuilt (bench/speed_baseline.py: padding to
max_length, random sampler, the model's own full-vocabulary loss, batch-1 greedy generate) and
(b) loraqa (bench/speed_loraqa.py: QATrainer + FeatureDataset + the formulation's collate/loss,
merged adapter, batched predict). Each variant runs in its own child process, so peak RSS is that
variant's own. Reported per variant: training examples/s and real (non-pad) tokens/s, peak RSS,
dev F1/EM on the same dev questions, answering questions/s, and model FLOPs utilisation (useful
training FLOPs, see common.FlopModel, over the fp32 matmul peak measured in the same run with the
same thread count). loraqa's batched answers are also compared with its batch-1 answers on the same
merged model. `--upper-half` adds a third run per model: loraqa with `lora.layers_to_transform:
upper_half` (backward stops halfway down), reported with its speed and its F1 against full loraqa.
`--growth` adds training time vs number of examples and vs window length (minilm-l6).

Writes bench/results/speed-<date>.json (-quick / -growth suffixes for those modes) and prints a table.
The machine is shared and noisy: trust the ratios within one run more than the absolute numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import MODEL_KEYS, build_tiny_t5, matmul_peak, questions, records_of_length, setups, vm_hwm_mib, write_json
from record import stamped
from speed_report import UPPER, add_mfu, growth_table, table

from loraqa.allocator import find_tcmalloc
from loraqa.runs.provenance import versions

RESULTS = Path(__file__).resolve().parent / "results"

# (train questions, dev questions, batch-1 identity questions) per model
DEFAULT_SIZES = {"smollm2-135m": (96, 48, 16), "minilm-l6": (1000, 500, 64), "tiny-t5": (400, 100, 32)}
QUICK_SIZES = {"smollm2-135m": (8, 4, 2), "minilm-l6": (64, 32, 16), "tiny-t5": (32, 16, 8)}
GROWTH_MODEL = "minilm-l6"
GROWTH_SIZES, QUICK_GROWTH_SIZES = (1000, 2000, 4000), (32, 64, 128)
GROWTH_LENGTHS = (128, 256, 384, 512)  # extractive windows of about these many tokens
GROWTH_PER_LENGTH, QUICK_GROWTH_PER_LENGTH = 256, 16
# Which malloc each variant runs with. "shipped": each pipeline as a user gets it: the seeds' scripts
# under glibc's allocator, loraqa under tcmalloc when the system has it (the `loraqa` command
# re-executes itself with it: src/loraqa/allocator.py). "system"/"tcmalloc": both variants alike,
# to separate the allocator's share of the speedup from the rest.
ALLOCATORS = ("shipped", "system", "tcmalloc")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default=",".join(MODEL_KEYS), help=f"comma list of {', '.join(MODEL_KEYS)}")
    p.add_argument("--train", default=None, help="train questions: N for every model, or key=N,key=N")
    p.add_argument("--eval", default=None, help="dev questions: N for every model, or key=N,key=N")
    p.add_argument("--identity", default=None, help="questions answered again at batch 1 (N or key=N,...)")
    p.add_argument("--quick", action="store_true", help="a few examples per model: a smoke check")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all cores)")
    p.add_argument("--seed", type=int, default=42, help="data sampling seed")
    p.add_argument(
        "--dev-paragraphs",
        action="store_true",
        help="dev questions as whole paragraphs (~5 questions each, as in the full dev set), not one by one",
    )
    p.add_argument(
        "--train-paragraphs",
        action="store_true",
        help="train questions as whole paragraphs (~5 per context), as the full train set asks them",
    )
    p.add_argument(
        "--no-shared-prefixes",
        action="store_true",
        help="loraqa trains without running shared prompt starts once (training.share_prompt_prefixes=false)",
    )
    p.add_argument(
        "--upper-half",
        action="store_true",
        help="also run loraqa with LoRA on the upper half of the layers (speed and F1 cost)",
    )
    p.add_argument("--no-compare", action="store_true", help="skip the side-by-side runs (e.g. with --growth)")
    p.add_argument("--growth", action="store_true", help=f"also time loraqa on {GROWTH_MODEL} vs size and length")
    p.add_argument("--growth-sizes", default=None, help="comma list of train questions (default 1000,2000,4000)")
    p.add_argument("--growth-lengths", default=",".join(map(str, GROWTH_LENGTHS)), help="window lengths in tokens")
    p.add_argument("--growth-per-length", type=int, default=None, help="train questions per length bucket")
    p.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default="shipped",
        help="shipped: seeds under glibc, loraqa under tcmalloc if installed; system/tcmalloc: both alike",
    )
    p.add_argument("--out", default=None, help="result JSON (default bench/results/speed-<date>.json)")
    p.add_argument(
        "--ddp",
        type=int,
        default=None,
        metavar="N",
        help="only compare 1 process x N threads with N torchrun processes x 1 thread (bench/speed_ddp.py)",
    )
    p.add_argument("--ddp-steps", type=int, default=200, help="training steps of each --ddp run")
    # internal: one variant in this process (the parent starts these)
    p.add_argument("--variant", choices=("baseline", "loraqa"), help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    p.add_argument("--tiny-t5-dir", help=argparse.SUPPRESS)
    p.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--lora-upper-half", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--length-bucket", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODEL_KEYS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_KEYS)}")
    args.model_list = models
    return args


def per_model(value: str | None, index: int, models: list[str], quick: bool) -> dict[str, int]:
    """`N` or `key=N,...` over the defaults for each model."""
    base = QUICK_SIZES if quick else DEFAULT_SIZES
    sizes = {m: base[m][index] for m in models}
    if value:
        for part in value.split(","):
            key, _, number = part.rpartition("=")
            for m in [key] if key else models:
                if m not in sizes:
                    raise SystemExit(f"speed.py: '{m}' in '{value}' is not one of the chosen models")
                sizes[m] = int(number)
    return sizes


# --- one variant, in a child process -------------------------------------------------------------------


def run_child(args) -> None:
    torch.set_num_threads(args.threads)
    setup = setups(args.tiny_t5_dir)[args.model]
    if args.length_bucket:
        from transformers import AutoTokenizer

        from loraqa.models.offline import resolve_model_path

        setup = dataclasses.replace(setup, model=dataclasses.replace(setup.model, max_seq_length=512))
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(setup.model.name))
        train = records_of_length(tokenizer, setup.model, args.length_bucket, int(args.train), args.seed)
        dev = []
    else:
        train, dev = questions(
            int(args.train),
            int(args.eval or 0),
            args.seed,
            whole_paragraphs=args.dev_paragraphs,
            train_paragraphs=args.train_paragraphs,
        )
    if args.no_shared_prefixes:
        setup = dataclasses.replace(setup, training=dataclasses.replace(setup.training, share_prompt_prefixes=False))
    if args.lora_upper_half:
        setup = dataclasses.replace(setup, lora=dataclasses.replace(setup.lora, layers_to_transform="upper_half"))
    if args.variant == "baseline":
        import speed_baseline

        result = speed_baseline.run(setup, train, dev, train_only=args.train_only)
    else:
        import speed_loraqa

        identity = int(args.identity or 0)
        result = speed_loraqa.run(setup, train, dev, train_only=args.train_only, identity_questions=identity)
    result["rss_peak_mib"] = round(vm_hwm_mib())
    result["threads"] = torch.get_num_threads()
    write_json(args.child_out, result)


def spawn(args, workdir: Path, name: str, extra: list[str]) -> dict:
    """Run one variant as a child process; its result plus the peak RSS the kernel accounted to it."""
    out, log = workdir / f"{name}.json", workdir / f"{name}.log"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--threads",
        str(args.threads),
        "--seed",
        str(args.seed),
        "--child-out",
        str(out),
        *extra,
    ]
    for flag in ("dev_paragraphs", "train_paragraphs", "no_shared_prefixes"):
        if getattr(args, flag):
            command.append("--" + flag.replace("_", "-"))
    if args.tiny_t5_dir:
        command += ["--tiny-t5-dir", args.tiny_t5_dir]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    env.pop("LD_PRELOAD", None)
    if uses_tcmalloc(args, extra[extra.index("--variant") + 1]):
        env["LD_PRELOAD"] = args.tcmalloc_path
    print(f"  {name} ...", end="", flush=True)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0 or not out.exists():
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise SystemExit(f"\nspeed.py: {name} failed (exit {proc.returncode}); last lines of {log}:\n{tail}")
    result = json.loads(out.read_text())
    result["rss_peak_mib_kernel"] = round(usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux
    result["wall_seconds"] = round(seconds, 1)
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)
    # 1-minute load average before and after: above the thread count, another process shared the CPU
    result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(f" {seconds:.0f}s (load {load_before:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
    return result


def uses_tcmalloc(args, variant: str) -> bool:
    """Whether a child of this variant ("baseline" or "loraqa") runs with tcmalloc preloaded."""
    if args.allocator == "shipped":
        return args.tcmalloc_path is not None and variant == "loraqa"
    return args.allocator == "tcmalloc"


# --- the parent: compare, growth, report ---------------------------------------------------------------


def compare(args, workdir: Path) -> dict:
    train = per_model(args.train, 0, args.model_list, args.quick)
    dev = per_model(args.eval, 1, args.model_list, args.quick)
    identity = per_model(args.identity, 2, args.model_list, args.quick)
    results = {}
    for key in args.model_list:
        print(f"{key}: {train[key]} train questions, {dev[key]} dev questions", flush=True)
        sizes = ["--model", key, "--train", str(train[key]), "--eval", str(dev[key])]
        row = {
            "baseline": spawn(args, workdir, f"{key}-baseline", ["--variant", "baseline", *sizes]),
            "loraqa": spawn(
                args, workdir, f"{key}-loraqa", ["--variant", "loraqa", *sizes, "--identity", str(identity[key])]
            ),
        }
        row["speedup"] = speedups(row["baseline"], row["loraqa"])
        if args.upper_half:
            upper = spawn(
                args, workdir, f"{key}-loraqa-upper-half", ["--variant", "loraqa", *sizes, "--lora-upper-half"]
            )
            row[UPPER] = upper
            row["upper_half_vs_loraqa"] = upper_half_costs(row["baseline"], row["loraqa"], upper)
        row["answers_agree_across_variants"] = sum(
            row["baseline"]["answers"][i] == a for i, a in row["loraqa"]["answers"].items()
        )  # different adapters (other batch order): a sanity count only
        if key == "tiny-t5":
            row["note"] = setups("x")["tiny-t5"].notes
        results[key] = row
    return results


def speedups(baseline: dict, loraqa: dict) -> dict:
    b, q = baseline, loraqa
    return {
        "train_examples_per_s": round(q["train"]["examples_per_s"] / b["train"]["examples_per_s"], 2),
        "train_tokens_per_s": round(q["train"]["tokens_per_s"] / b["train"]["tokens_per_s"], 2),
        "eval_questions_per_s": round(q["eval"]["questions_per_s"] / b["eval"]["questions_per_s"], 2),
        "peak_rss": round(q["rss_peak_mib_kernel"] / b["rss_peak_mib_kernel"], 2),
        "batched_vs_batch1_questions_per_s": (
            round(q["eval"]["questions_per_s"] / q["batch1"]["questions_per_s"], 2) if "batch1" in q else None
        ),
    }


def upper_half_costs(baseline: dict, loraqa: dict, upper: dict) -> dict:
    """What LoRA on the upper half gains in speed and loses in F1, against full loraqa and the seeds."""
    tokens = upper["train"]["tokens_per_s"]
    f1 = upper["eval"]["f1"]
    return {
        "train_tokens_per_s": round(tokens / loraqa["train"]["tokens_per_s"], 2),
        "train_tokens_per_s_vs_seeds": round(tokens / baseline["train"]["tokens_per_s"], 2),
        "f1_delta": round(f1 - loraqa["eval"]["f1"], 2),
        "f1_delta_vs_seeds": round(f1 - baseline["eval"]["f1"], 2),
    }


def growth(args, workdir: Path) -> dict:
    default_sizes = QUICK_GROWTH_SIZES if args.quick else GROWTH_SIZES
    sizes = [int(s) for s in args.growth_sizes.split(",")] if args.growth_sizes else list(default_sizes)
    lengths = [int(s) for s in args.growth_lengths.split(",")]
    per_length = args.growth_per_length or (QUICK_GROWTH_PER_LENGTH if args.quick else GROWTH_PER_LENGTH)
    print(f"growth: loraqa on {GROWTH_MODEL}, {sizes} questions; {per_length} windows of {lengths} tokens", flush=True)
    by_size = []
    for n in sizes:
        extra = ["--variant", "loraqa", "--model", GROWTH_MODEL, "--train", str(n), "--train-only"]
        r = spawn(args, workdir, f"growth-n{n}", extra)
        by_size.append({"questions": n, **_growth_row(r)})
    by_length = []
    for length in lengths:
        extra = [
            "--variant",
            "loraqa",
            "--model",
            GROWTH_MODEL,
            "--train",
            str(per_length),
            "--length-bucket",
            str(length),
            "--train-only",
        ]
        r = spawn(args, workdir, f"growth-len{length}", extra)
        by_length.append({"length": length, **_growth_row(r)})
    first, last = by_size[0], by_size[-1]
    per_example = [row["seconds"] / row["questions"] for row in by_size]
    lf, ll = by_length[0], by_length[-1]
    return {
        "by_size": by_size,
        "by_length": by_length,
        # 1.0 = time exactly proportional to the number of examples
        "size_time_ratio_vs_linear": round(
            (last["seconds"] / first["seconds"]) / (last["questions"] / first["questions"]), 3
        ),
        "seconds_per_example_spread": round(max(per_example) / min(per_example), 3),
        # time per window ~ length^k: k = 1 is linear, 2 is quadratic
        "length_exponent": round(math.log(ll["seconds"] / lf["seconds"]) / math.log(ll["length"] / lf["length"]), 2),
        "tokens_per_s_longest_vs_shortest": round(ll["tokens_per_s"] / lf["tokens_per_s"], 2),
    }


def _growth_row(result: dict) -> dict:
    t = result["train"]
    return {
        "features": t["features"],
        "real_tokens": t["real_tokens"],
        "seconds": t["seconds"],
        "examples_per_s": t["examples_per_s"],
        "tokens_per_s": t["tokens_per_s"],
        "useful_gflop_per_s": t["useful_gflop_per_s"],
        "padding_share": t["padding_share"],
        "rss_peak_mib": result["rss_peak_mib_kernel"],
    }


def machine(args) -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": args.threads,
        "python": platform.python_version(),
        **versions(),
        "allocator": {
            "mode": args.allocator,
            "seeds": "tcmalloc" if uses_tcmalloc(args, "baseline") else "glibc",
            "loraqa": "tcmalloc" if uses_tcmalloc(args, "loraqa") else "glibc",
        },
        "load_average_at_start": os.getloadavg(),
        "dev_sampling": "whole paragraphs" if args.dev_paragraphs else "questions",
        "train_sampling": "whole paragraphs" if args.train_paragraphs else "questions",
        "loraqa_shared_prompt_starts": not args.no_shared_prefixes,
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.variant:
        run_child(args)
        return
    if args.ddp:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from speed_ddp import run as run_ddp

        run_ddp(args.ddp, args.ddp_steps, out=args.out, argv=sys.argv)
        return
    started = time.perf_counter()
    args.tcmalloc_path = find_tcmalloc()
    if args.allocator == "tcmalloc" and not args.tcmalloc_path:
        raise SystemExit(
            "speed.py: --allocator tcmalloc needs libtcmalloc_minimal.so.4 (apt-get install libtcmalloc-minimal4)"
        )
    mode = "-quick" if args.quick else ("-growth" if args.no_compare else "")
    out = Path(args.out) if args.out else RESULTS / f"speed-{datetime.date.today().isoformat()}{mode}.json"
    if not args.out and out.exists():  # never overwrite an earlier result of the same day
        out = out.with_name(f"{out.stem}-{datetime.datetime.now():%H%M%S}.json")
    report: dict = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/speed.py", *sys.argv[1:]]),
        "machine": machine(args),
    }
    with tempfile.TemporaryDirectory(prefix="loraqa-speed-") as tmp:
        workdir = Path(tmp)
        args.tiny_t5_dir = None
        if "tiny-t5" in args.model_list and not args.no_compare:
            args.tiny_t5_dir = str(build_tiny_t5(workdir / "tiny-t5"))
        print(f"fp32 matmul peak, {args.threads} threads ...", end="", flush=True)
        report["matmul_peak_start"] = matmul_peak(args.threads)
        print(f" {report['matmul_peak_start']['median_gflops']} GFLOP/s", flush=True)
        if not args.no_compare:
            report["models"] = compare(args, workdir)
        if args.growth:
            report["growth"] = growth(args, workdir)
        report["matmul_peak_end"] = matmul_peak(args.threads)
    # The machine is shared: the busier of the two measurements understates what the CPU can do.
    peak = max(report["matmul_peak_start"]["median_gflops"], report["matmul_peak_end"]["median_gflops"])
    report["mfu_peak_gflops"] = peak
    add_mfu(report, peak)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    write_json(out, stamped(report, sys.argv))  # commit, dirty flag, command: bench/record.py
    print()
    if "models" in report:
        print(table(report["models"]))
    if "growth" in report:
        print(growth_table(report["growth"]))
    print(
        f"fp32 matmul peak {report['matmul_peak_start']['median_gflops']} GFLOP/s at start, "
        f"{report['matmul_peak_end']['median_gflops']} at end (MFU uses {peak}); "
        f"total {report['total_seconds'] / 60:.1f} min; wrote {out}"
    )


if __name__ == "__main__":
    main()
