#!/usr/bin/env bash
# scripts/gpu-check.sh: check loraqa's CUDA path on one GPU, in under 8 minutes.
#   bash scripts/gpu-check.sh            # then commit bench/results/gpu-check-<date>.json
# 1. installs what it needs: loraqa (pip install -e .) and, if torch has no CUDA, a CUDA torch from
#    the PyTorch wheel index (packages only: no model or data from any hub; models are the offline ones);
# 2. runs the device-independent tests on CUDA (LORAQA_TEST_DEVICE=cuda: the tiny-model runs train there);
# 3. trains minilm-l6 and smollm2-135m for ~2 minutes each with precision auto (bf16 where supported),
#    compares their answers with a CPU evaluation of the same adapter, and writes the results file
#    (examples/s, tokens/s, MFU against the GPU's dense bf16 peak, peak memory, git commit).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
deadline=$((SECONDS + 480))

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    "$PY" -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cu124
fi
"$PY" -m pip install --quiet -e .
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('gpu-check:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"

# Tests: the tiny-model suites that run real training, on CUDA; ~3 minutes budget.
LORAQA_TEST_DEVICE=cuda timeout 200 "$PY" -m pytest -q -x -p no:cacheprovider \
    tests/training tests/formulations tests/evaluation tests/inference || echo "gpu-check: TESTS FAILED (see above)"

left=$((deadline - SECONDS - 60))   # a minute for loading and the CPU evaluations
per_model=$(( left / 2 / 2 > 30 ? left / 2 / 2 : 30 ))   # train seconds each: half of each model's share
"$PY" scripts/gpu_check.py --device cuda --seconds "$per_model"
