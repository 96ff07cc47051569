#!/usr/bin/env bash
# The main job on the offline default: LoRA on all-MiniLM-L6-v2 (extractive) with 2,000 SQuAD v1.1
# train questions; baseline and adapter evaluated on 500 official dev questions. Each call makes a
# new run directory, so earlier runs are never overwritten.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/loraqa train minilm-l6-squad "name=minilm-l6-squad-$(date +%Y%m%d-%H%M%S)" "$@"
