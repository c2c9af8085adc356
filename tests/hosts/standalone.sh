#!/usr/bin/env bash
# The standalone on JACK's dummy backend (no sound card): starts a private
# JACK server, runs target/release/wren-standalone, rolls the JACK transport,
# records five seconds of Wren's outputs with jack_rec and checks that they
# sound in Wren's default key (D major).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
python="${PYTHON:-$root/.venv/bin/python}"
binary="${CARGO_TARGET_DIR:-$root/target}/release/wren-standalone"
if [[ ! -x "$binary" ]]; then
    echo "no $binary: build it with cargo build --release -p wren --features standalone" >&2
    exit 1
fi

export JACK_DEFAULT_SERVER="wren-test-$$"
work="$(mktemp -d)"
cleanup() {
    kill "${wren_pid:-}" "${jack_pid:-}" 2>/dev/null || true
    wait 2>/dev/null || true
    # A killed server leaves its semaphores behind.
    rm -f /dev/shm/jack_sem.*"_${JACK_DEFAULT_SERVER}_"*
    rm -rf "$work"
}
trap cleanup EXIT

jackd --no-realtime -n "$JACK_DEFAULT_SERVER" -d dummy -r 48000 -p 256 >"$work/jackd.log" 2>&1 &
jack_pid=$!
for _ in $(seq 50); do jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done

"$binary" --backend jack >"$work/wren.log" 2>&1 &
wren_pid=$!
# The standalone registers its ports, loads its models, then activates its
# JACK client and connects its outputs to the system playback ports. JACK
# refuses connections to a client that is not active yet, so wait for those.
active() { jack_lsp -c wren:output_2 2>/dev/null | grep -q 'system:playback_2'; }
for _ in $(seq 300); do active && break; sleep 0.1; done
if ! active; then
    echo "FAIL: the standalone's JACK client never became active" >&2
    jack_lsp -c >&2 || true
    cat "$work/wren.log" >&2
    exit 1
fi

echo play | jack_transport >/dev/null
jack_rec -f "$work/wren.wav" -d 5 wren:output_1 wren:output_2 >/dev/null
"$python" tests/hosts/check_standalone.py "$work/wren.wav"
