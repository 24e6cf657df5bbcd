#!/usr/bin/env bash
# Set up PixelPerfect on a Debian machine: system packages, then the Python environment in .venv/.
#   scripts/setup.sh          what running needs (ExifTool, the engine, daemon and UI)
#   scripts/setup.sh --dev    plus training and test tools (TensorFlow, pytest, Playwright, Chromium, exiv2)
# Safe to re-run: it only installs what is missing. Once .venv matches pyproject.toml and constraints.txt
# (a stamp holds their hash) and imports this checkout's package, it does not touch the network at all.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

apt_packages=(libimage-exiftool-perl libturbojpeg0)
# systemd: systemd-analyze checks the service units; util-linux: setpriv runs a test daemon unprivileged;
# lua5.1: the tests read the Lightroom smart collection with the Lua that Lightroom runs.
[ $dev = 1 ] && apt_packages+=(exiv2 chromium fonts-dejavu-core lua5.1 postgresql systemd util-linux)
python=$(command -v python3.11 || true)
[ -z "$python" ] && apt_packages+=(python3.11)

missing=()
for package in "${apt_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
# venv needs ensurepip, which Debian ships separately for its own Python.
if [ -n "$python" ] && [ "$python" = /usr/bin/python3.11 ] && ! "$python" -c "import ensurepip" 2>/dev/null; then
  missing+=(python3.11-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" != 0 ] && sudo=sudo
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  python=$(command -v python3.11)
fi

# The dev-only parity test (tests/test_backbone_torch_parity.py) checks the Keras backbone against
# PyTorch's CPU build. PyPI's Linux torch is a CUDA build of several GB, so torch is taken only
# where pip finds the CPU build without an index (--no-index: a wheel in pip's find-links, as on
# our development machines); elsewhere the test skips.
TORCH_FOR_TESTS=torch==2.13.0
install_torch_cpu_if_at_hand() {
  .venv/bin/python -c "import torch" 2>/dev/null && return 0
  local wheels
  wheels=$(mktemp -d)
  if .venv/bin/python -m pip download -q --no-deps --no-index -d "$wheels" "$TORCH_FOR_TESTS" 2>/dev/null \
     && ls "$wheels"/torch-*+cpu-*.whl >/dev/null 2>&1; then
    echo "setup: installing PyTorch's CPU build for the backbone parity test"
    .venv/bin/python -m pip install -q "$wheels"/torch-*.whl
  else
    echo "setup: no PyTorch CPU build at hand: the backbone parity test will skip"
  fi
  rm -rf "$wheels"
}

# What the environment was installed from: a later run with the same files installs nothing.
stamp=.venv/.pixelperfect-setup-stamp
wanted=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
stamp_matches() {
  [ -f "$stamp" ] || return 1
  local line
  line=$(cat "$stamp")
  # A --dev install also serves a plain one.
  [ "$line" = "dev=1 $wanted" ] || { [ $dev = 0 ] && [ "$line" = "dev=0 $wanted" ]; }
}
imports_this_checkout() {
  local here found
  here=$(pwd -P)
  found=$(cd / && "$here/.venv/bin/python" -c \
    'import os, pixelperfect_daemon; print(os.path.dirname(os.path.realpath(pixelperfect_daemon.__file__)))' 2>/dev/null) \
    || return 1
  [ "$found" = "$here/pixelperfect_daemon" ]
}
if [ -x .venv/bin/python ] && stamp_matches; then
  if ! imports_this_checkout; then
    # Same dependencies, another checkout (or a moved one): link this one in, from what is installed.
    echo "setup: installing this checkout into .venv (offline: no build isolation, no dependencies)"
    .venv/bin/python -m pip install -q --no-index --no-build-isolation --no-deps -e .
  fi
  echo "setup: .venv matches pyproject.toml and constraints.txt, nothing to download"
  exit 0
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $python"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# constraints.txt pins every package to the versions the models were trained and tested with,
# so a new release of numpy, OpenCV or Keras cannot change decoded pixels or a retrain's weights.
if [ $dev = 1 ]; then
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
  install_torch_cpu_if_at_hand
else
  .venv/bin/python -m pip install -q -c constraints.txt -e .
fi
echo "dev=$dev $wanted" > "$stamp"
echo "setup: done (.venv/bin/pixelperfect is the command)"
