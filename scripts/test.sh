#!/usr/bin/env bash
# Install what the tests need, then run the whole suite (tiny models plus a few offline-model
# integration tests); extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q "$@"
