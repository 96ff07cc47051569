#!/usr/bin/env bash
# scripts/gpu-check.sh: check loraqa's CUDA path on a lent GPU machine, as is, in under 8 minutes.
#   bash scripts/gpu-check.sh --prepare    # HERE (network): build .gpu-carry/ (wheels + model configs/tokenizers)
#   bash scripts/gpu-check.sh              # THERE (no network; carry .gpu-carry): then commit bench/results/gpu-check-*.json
#   bash scripts/gpu-check.sh --rehearse   # HERE: --prepare, then the whole run on the CPU with the network cut
# The lent machine has Python 3.12 with a CUDA torch (and transformers, peft, accelerate, ... of its own
# versions) and no network. A run there: a venv over the machine's python3 and its packages, pip
# --no-index from .gpu-carry/wheels for what loraqa needs that the machine lacks or has at another
# version (transformers >= 5.23, rouge-score, ...), loraqa itself from the working tree with
# --no-deps --no-build-isolation. Then: the device-independent tests on CUDA (150 s), then
# scripts/gpu_check.py (agreement per formulation, real-shape speed; its docstring has the bars).
# Exit status: non-zero when installing, a test or a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=${GPU_CARRY:-.gpu-carry}
mode=${1:-run}
PY=${PYTHON:-python3}
deadline=$((SECONDS + 470))

# What the check needs beyond the machine's image (KINDS.md lists it): pip resolves these against the
# machine's packages and takes from the carry only what is missing or of an unfit version.
NEEDS=("transformers>=5.23,<6" "peft>=0.21" "accelerate>=1.0" "safetensors>=0.4" "rouge-score>=0.1.2" "pyyaml>=6"
       "pytest>=8")

prepare() {
    # Wheels for cp312 manylinux x86_64 (the machine), at this checkout's tested versions, with their
    # needs; binary wheels of packages the machine already has are not carried (numpy, torch, ...).
    local here=${HERE_PYTHON:-/work/main/.venv/bin/python}
    rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
    "$here" scripts/gpu_check.py --prepare "$CARRY"
    local pins wheel_pins rouge
    pins=$("$here" scripts/gpu_machine.py --pins)
    rouge=$(tr ' ' '\n' <<< "$pins" | grep '^rouge-score==')
    wheel_pins=$(tr ' ' '\n' <<< "$pins" | grep -v '^rouge-score==')
    local platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    # shellcheck disable=SC2086
    "$here" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d "$CARRY/wheels" $wheel_pins
    if [ -n "${REHEARSING:-}" ]; then  # the rehearsal's interpreter, if not 3.12, needs its own binary wheels
        # shellcheck disable=SC2086
        "$here" -m pip download --quiet --no-deps --only-binary=:all: -d "$CARRY/wheels" $wheel_pins
    fi
    # rouge-score publishes only a source archive: built here into a pure-Python wheel.
    "$here" -m pip wheel --quiet --no-deps --no-build-isolation -w "$CARRY/wheels" "${rouge/rouge-score/rouge_score}"
    du -sh "$CARRY"
}

install() {
    # A venv over the machine's python3 that sees its site-packages (torch), then pip from the carry only.
    local venv=${LORAQA_GPU_VENV:-/tmp/loraqa-gpu-venv}
    "$PY" -m venv --clear --without-pip "$venv"  # pip and setuptools: the machine's, through machine.pth
    "$PY" -c 'import site; print("\n".join(site.getsitepackages()))' > "$venv/lib/$(ls "$venv/lib")/site-packages/machine.pth"
    "$venv/bin/python" -m pip install --quiet --no-index --find-links "$CARRY/wheels" "${NEEDS[@]}"
    "$venv/bin/python" -m pip install --quiet --no-index --no-deps --no-build-isolation -e .
    PY="$venv/bin/python"
    export PYTHONPATH="$PWD/$CARRY/site"  # the weightless MiniLM tokenizer package the tiny encoders read
}

run() {
    local device=$1; shift
    install
    "$PY" -c "import torch, transformers, loraqa; print('gpu-check:', torch.__version__, transformers.__version__, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')"
    local failed=0
    # Device-independent tests whose tiny-model runs train on $device (LORAQA_TEST_DEVICE); 150 s at most.
    LORAQA_TEST_DEVICE=$device timeout "${TEST_SECONDS:-150}" "$PY" -m pytest -q -x -p no:cacheprovider \
        "${TESTS[@]}" || { echo "gpu-check: TESTS FAILED (see above)"; failed=1; }
    timeout $(( deadline - SECONDS > 60 ? deadline - SECONDS : 60 )) \
        "$PY" scripts/gpu_check.py --device "$device" --carry "$CARRY" "$@" || failed=1
    return $failed
}

case "$mode" in
    --prepare) prepare ;;
    --rehearse)
        # The whole run on the CPU, the network cut (a new network namespace when unshare works, else
        # proxies to nowhere), tiny step counts; the venv's base is this machine's python with this
        # checkout's torch, standing in for the machine's image.
        REHEARSING=1 prepare
        TESTS=(tests/training/test_precision.py)
        export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_NO_INDEX=1
        cut=()
        if unshare -rn true 2>/dev/null; then cut=(unshare -rn); else
            export http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9
        fi
        PYTHON=${REHEARSE_PYTHON:-$(bash scripts/gpu-check.sh --machine-stand-in)} "${cut[@]}" \
            bash scripts/gpu-check.sh --run-cpu --dry-run --out "${REHEARSE_OUT:-/tmp/gpu-check-rehearsal.json}" ;;
    --machine-stand-in)
        # A python whose site-packages hold this checkout's versions of the machine's image packages only
        # (KINDS.md's list: torch, numpy, ... but not rouge-score, nltk, ...), so the carry must supply the rest.
        stand_in=/tmp/loraqa-machine-stand-in
        rm -rf "$stand_in" && python3 -m venv --without-pip "$stand_in" >&2
        /work/main/.venv/bin/python scripts/gpu_machine.py "$stand_in" >&2
        echo "$stand_in/bin/python" ;;
    --run-cpu) shift; TESTS=(tests/training/test_precision.py); run cpu "$@" ;;
    run) TESTS=(tests/training/test_precision.py tests/training/test_guards.py tests/training/test_release.py
                tests/formulations/test_shared_prefix_training.py tests/training/test_training_options.py)
         run cuda ;;
    *) echo "usage: bash scripts/gpu-check.sh [--prepare | --rehearse]" >&2; exit 2 ;;
esac
