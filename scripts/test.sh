#!/usr/bin/env bash
# Set up everything the tests need, then run the whole suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python -m pytest "$@"
