#!/usr/bin/env bash
# scripts/gpu-check.sh: check loraqa's CUDA path on one GPU, in under 8 minutes.
#   bash scripts/gpu-check.sh            # then commit bench/results/gpu-check-<date>.json
# 1. installs what it needs: loraqa (pip install -e .) and, if torch has no CUDA, a CUDA torch from
#    the PyTorch wheel index (packages only: no model or data from any hub; models are the offline ones);
# 2. runs the device-independent tests on CUDA (LORAQA_TEST_DEVICE=cuda: the tiny-model runs train there);
# 3. trains minilm-l6 and smollm2-135m for ~2 minutes each with precision auto (bf16 where supported),
#    compares their answers with a CPU evaluation of the same adapter, and writes the results file
#    (examples/s, tokens/s, MFU against the GPU's dense bf16 peak, peak memory, git commit);
# 4. QLoRA: each model trains 30 steps on a 4-bit base (bitsandbytes, installed from PyPI when
#    missing), `loraqa merge` writes it into the full-precision base, and the merged answers must
#    equal the unmerged adapter's (the `qlora` rows of the same results file).
# Budget of the 480 s, sized from the steps' work (no GPU run has timed them yet): ~30 s installs
# (torch already CUDA), 150 s tests, 60 s loading + CPU evaluations, 120 s QLoRA (2 models x 30
# steps, 100 test questions answered 3 times each), the rest (>= 2 x 2 x 30 s) the speed check;
# gpu_check.py runs under the remaining time and writes its file after every row.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
deadline=$((SECONDS + 480))

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    "$PY" -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cu124
fi
"$PY" -m pip install --quiet -e .
if ! "$PY" -c "import bitsandbytes" 2>/dev/null; then
    "$PY" -m pip install --quiet bitsandbytes || echo "gpu-check: bitsandbytes did not install; the QLoRA rows will say skipped"
fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('gpu-check:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"

# Tests: the tiny-model suites that run real training, on CUDA; 150 s budget.
LORAQA_TEST_DEVICE=cuda timeout 150 "$PY" -m pytest -q -x -p no:cacheprovider \
    tests/training tests/formulations tests/evaluation tests/inference || echo "gpu-check: TESTS FAILED (see above)"

qlora=120                            # 2 models x (30 QLoRA steps, a merge, 3 x 100 answers)
left=$((deadline - SECONDS - 60 - qlora))   # a minute for loading and the CPU evaluations
per_model=$(( left / 2 / 2 > 30 ? left / 2 / 2 : 30 ))   # train seconds each: half of each model's share
timeout $(( deadline - SECONDS > 60 ? deadline - SECONDS : 60 )) \
    "$PY" scripts/gpu_check.py --device cuda --seconds "$per_model" --qlora-steps 30
