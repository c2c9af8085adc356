#!/usr/bin/env bash
# Real-host tests: bundles Wren, plays the CLAP in clack-host, opens its
# editor there and in the standalone under Xvfb, plays the VST3 in
# pedalboard and dawdreamer, and the standalone (built beforehand) on JACK's
# dummy backend. Fails on the first failure.
#
# Python: .venv/bin/python at the repository root (pedalboard, dawdreamer,
# numpy), or $PYTHON when set.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

python="${PYTHON:-$root/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
    echo "no Python at $python: create .venv or set PYTHON" >&2
    exit 1
fi

# The test suite's own build (`cargo xtask test` runs it first): the same
# packages and features, so these tests build nothing of their own.
build="--release --workspace --features wren/standalone"

echo "== bundle"
cargo xtask bundle

echo "== CLAP in clack-host: playing, lifecycle, state"
WREN_REQUIRE_BUNDLE=1 cargo test $build --test clap_host --test clap_lifecycle \
    --test clap_state -- --nocapture

echo "== editor in a CLAP host and in the standalone, under Xvfb"
WREN_REQUIRE_BUNDLE=1 WREN_REQUIRE_DISPLAY=1 xvfb-run -a -s "-screen 0 1600x1000x24 -noreset" \
    cargo test $build --test editor_window -- --nocapture --test-threads 1

echo "== VST3 in pedalboard and dawdreamer"
"$python" tests/hosts/test_vst3.py

echo "== standalone on JACK (dummy backend)"
tests/hosts/standalone.sh

echo "== all real-host tests passed"
