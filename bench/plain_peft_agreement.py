"""Does an extractive adapter answer the same under plain transformers + peft? (issue 14, first bar)

    .venv/bin/python bench/plain_peft_agreement.py runs/minilm-l6-squad-DATE

Loads the run's adapter with `PeftModel.from_pretrained` on the base its README names (for
minilm-l6, the package's copy of all-MiniLM-L6-v2), calls it the standard way (the tokenizer's full
output, token_type_ids included) on every test question of the run that fits one window, reads the
span with loraqa's own span selection, and counts answers equal to the run's predictions.json.
Writes bench/results/plain-peft-<date>.json with the commit and the command.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import torch
from peft import PeftModel
from record import stamped
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from loraqa.config.loader import load_config
from loraqa.data.sources import load_records
from loraqa.device import plan_device
from loraqa.formulations.extractive import Window, best_answer
from loraqa.inference.evaluate import predict_settings
from loraqa.inference.ready import load_ready_model, model_config_for_adapter
from loraqa.models.offline import resolve_model_path
from loraqa.runs.files import ADAPTER_DIR, ADAPTER_META_FILE, CONFIG_FILE, PREDICTIONS_FILE

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    run = Path(argv[0])
    adapter = run / ADAPTER_DIR
    preds = json.loads((run / PREDICTIONS_FILE).read_text())
    config = load_config(str(run / CONFIG_FILE), [])
    records = [r for r in load_records(config.data.test).records if r.id in preds]
    torch.set_num_threads(2)
    base = AutoModelForQuestionAnswering.from_pretrained(resolve_model_path("minilm-l6"))
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    tok = AutoTokenizer.from_pretrained(str(adapter))
    meta = json.loads((adapter / ADAPTER_META_FILE).read_text())
    ready = load_ready_model(
        model_config_for_adapter(adapter, config.model), plan_device("cpu", "auto", meta["model_type"]), str(adapter)
    )
    settings = predict_settings(config, version_2=False)
    L = config.model.max_seq_length
    same = compared = skipped = 0
    for r in records:
        enc = tok(
            r.question,
            r.context,
            return_tensors="pt",
            return_offsets_mapping=True,
            truncation="only_second",
            max_length=L,
        )
        if len(enc["input_ids"][0]) >= L:
            skipped += 1
            continue
        offs = enc.pop("offset_mapping")[0].tolist()
        with torch.no_grad():
            out = model(**enc)
        spans = [tuple(o) if s == 1 else None for o, s in zip(offs, enc.sequence_ids(0), strict=True)]
        w = Window(0, enc["input_ids"][0].tolist(), None, spans, 0, 0)
        text, _ = best_answer(
            r,
            [(w, out.start_logits[0].numpy(), out.end_logits[0].numpy())],
            settings,
            ready.model_config.max_answer_length,
        )
        compared += 1
        same += text == preds[r.id]
    result = {
        "run": str(run),
        "same": same,
        "compared": compared,
        "skipped_longer_than_one_window": skipped,
        "share": round(same / compared, 4) if compared else None,
    }
    out = ROOT / "bench" / "results" / f"plain-peft-{dt.date.today():%Y-%m-%d}.json"
    out.write_text(json.dumps(stamped(result, sys.argv), indent=2) + "\n", encoding="utf-8")
    print(
        f"plain peft (standard call, token_type_ids included) answered as loraqa on {same} of {compared} dev questions "
        f"({100 * same / compared:.1f}%); {skipped} longer than one {L}-token window skipped"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
