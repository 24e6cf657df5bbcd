"""The run-time paths stay light: the engine, the daemon and `pixelperfect analyze` import no TensorFlow,
Keras or Gradio (they cost seconds and a gigabyte, and the run-time install has none of them)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO_ROOT

HEAVY = ("tensorflow", "keras", "gradio")

ENTRY_POINTS = {
    "engine": "import pixelperfect_daemon.engine",
    "daemon": "import pixelperfect_daemon.daemon, pixelperfect_daemon.commands.daemon",
    "analyze": (
        "from click.testing import CliRunner; from pixelperfect_daemon.cli import main;"
        "r = CliRunner().invoke(main, ['analyze', '--json', 'pixelperfect_daemon/data/demo/chelsea.jpg']);"
        "assert r.exit_code == 0, r.output"
    ),
}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_run_time_entry_points_import_no_training_or_ui_framework(name):
    script = ENTRY_POINTS[name] + f"; import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", f"{name} imported {out.stdout.strip()}"
