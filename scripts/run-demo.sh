#!/usr/bin/env bash
# Set up, then run the main job on the embedded default: watch demo/ingest (seeded with sample
# photos), tag XMP, index into demo/pixelperfect.sqlite, and serve the review UI on 127.0.0.1:7860.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1
exec .venv/bin/pixelperfect demo "$@"
