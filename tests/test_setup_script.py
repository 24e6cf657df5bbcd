"""scripts/setup.sh restarts offline: with .venv matching pyproject.toml and constraints.txt it calls no pip.

The script runs on a copy of the repository's setup files in a temporary folder, whose
``.venv/bin/python`` stands in for the real interpreter and logs every ``-m pip`` call; pip's index
points at a port nothing listens on.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg") is None or subprocess.run(["dpkg", "-s", "libimage-exiftool-perl"],
                                                   capture_output=True).returncode != 0,
    reason="needs a Debian machine with ExifTool installed (setup.sh would call apt-get otherwise)",
)  # fmt: skip


def checkout(tmp_path: Path, *, pip_succeeds: bool, with_package: bool = True) -> Path:
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup.sh", root / "scripts" / "setup.sh")
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, root / name)
    if with_package:
        (root / "pixelperfect_daemon").mkdir()
        (root / "pixelperfect_daemon" / "__init__.py").write_text("")
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(
        "#!/bin/bash\n"
        'if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then\n'
        f'  echo "$*" >> {root / "pip-calls.log"}\n'
        f"  exit {0 if pip_succeeds else 1}\n"
        "fi\n"
        f'PYTHONPATH={root} exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    return root


def stamp(root: Path, dev: int = 0) -> None:
    digest = hashlib.sha256((root / "pyproject.toml").read_bytes() + (root / "constraints.txt").read_bytes())
    (root / ".venv" / ".pixelperfect-setup-stamp").write_text(f"dev={dev} {digest.hexdigest()}\n")


def run_setup(root: Path, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0"}
    return subprocess.run(
        ["bash", str(root / "scripts" / "setup.sh"), *args], capture_output=True, text=True, env=environment, timeout=60
    )


def pip_calls(root: Path) -> list[str]:
    log = root / "pip-calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_matching_environment_starts_without_pip(tmp_path):
    root = checkout(tmp_path, pip_succeeds=False)
    stamp(root)
    result = run_setup(root)
    assert result.returncode == 0, result.stderr
    assert pip_calls(root) == []
    assert "nothing to download" in result.stdout


def test_a_dev_install_serves_a_plain_start_but_not_the_reverse(tmp_path):
    root = checkout(tmp_path, pip_succeeds=False)
    stamp(root, dev=1)
    assert run_setup(root).returncode == 0 and pip_calls(root) == []
    stamp(root, dev=0)
    for package in ("exiv2", "chromium", "fonts-dejavu-core", "lua5.1"):  # else --dev would call apt-get
        if subprocess.run(["dpkg", "-s", package], capture_output=True).returncode != 0:
            pytest.skip(f"{package} is not installed")
    assert run_setup(root, "--dev").returncode != 0  # the dev extras may be missing: pip is needed
    assert pip_calls(root)


def test_changed_constraints_go_to_pip(tmp_path):
    root = checkout(tmp_path, pip_succeeds=False)
    stamp(root)
    with open(root / "constraints.txt", "a") as constraints:
        constraints.write("newpackage==1.0\n")
    result = run_setup(root)
    assert result.returncode != 0
    assert pip_calls(root)[0] == "-m pip install -q --upgrade pip"


def test_same_dependencies_new_checkout_installs_offline_only(tmp_path):
    root = checkout(tmp_path, pip_succeeds=True, with_package=False)
    stamp(root)
    result = run_setup(root)
    assert result.returncode == 0, result.stderr
    assert pip_calls(root) == ["-m pip install -q --no-index --no-build-isolation --no-deps -e ."]
