#!/usr/bin/env bash
# Installs what Wren's tests and tools need on a Debian machine: system
# packages for the standalone (ALSA, JACK), the editor tests (Xvfb, Mesa
# OpenGL, tesseract OCR), the soundfont, a Python
# virtual environment (.venv) with the plugin hosts used by the tests, and
# cargo-fuzz for the fuzz targets.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(pkg-config libasound2-dev libjack-jackd2-dev jackd2 fluid-soundfont-gm python3-venv
    xvfb xauth tesseract-ocr libgl1-mesa-dri libglx-mesa0 libx11-xcb1 libxcursor1 libxkbcommon-x11-0)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import pedalboard, dawdreamer, numpy, mido, onnxruntime, onnx, matplotlib" 2>/dev/null; then
    echo "setup: installing Python packages into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -r tests/hosts/requirements.txt
fi
if [ "${1:-}" = "--data" ] && ! .venv/bin/python -c "import music21" 2>/dev/null; then
    echo "setup: installing music21 into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "music21==10.5.1"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz"
    cargo install -q --locked cargo-fuzz --version 0.13.2
fi
echo "setup: ready"
