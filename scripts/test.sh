#!/usr/bin/env bash
# Set up everything the tests need, then run the suite (what CI runs).
#   scripts/test.sh            the whole suite
#   scripts/test.sh --fast     without the tests marked slow (a couple of minutes)
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2
args=()
for arg in "$@"; do
  if [ "$arg" = "--fast" ]; then args+=(-m "not slow"); else args+=("$arg"); fi
done
exec .venv/bin/python -m pytest "${args[@]}"
