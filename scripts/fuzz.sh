#!/bin/sh
# Run every cargo-fuzz target for SECONDS each (default 30), one at a time
# and on one worker, from the seed corpus in fuzz/corpus/TARGET. Findings go
# to fuzz/artifacts/TARGET; new inputs the fuzzer keeps go to
# fuzz/corpus-run/TARGET (not committed). Exits non-zero on the first crash.
#
#   scripts/fuzz.sh            # 30 s each (what scripts/test.sh runs)
#   scripts/fuzz.sh 600        # 10 minutes each
#   scripts/fuzz.sh 60 elf     # one target
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and
# cargo-fuzz (installed here from crates.io when missing).
set -eu
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-30}
shift 2>/dev/null || true
TARGETS=${*:-"image_archive layer_tar elf ldcache manifest"}

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz.sh: the nightly Rust toolchain is missing (cargo fuzz needs it): rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi

cd fuzz
# All targets at once; a failed build stops here (set -e, no pipe).
cargo +nightly fuzz build -O
BIN=target/x86_64-unknown-linux-gnu/release
for t in $TARGETS; do
    mkdir -p "corpus-run/$t" "artifacts/$t"
    echo "fuzz.sh: $t for ${SECONDS_EACH}s" >&2
    # Seeds are read from corpus/ (never written); new inputs go to corpus-run/.
    "$BIN/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
        "corpus-run/$t" "corpus/$t" 2>"artifacts/$t/log" || {
        tail -n 40 "artifacts/$t/log" >&2
        echo "fuzz.sh: $t found a crash; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    }
    grep -E '^stat::number_of_executed_units|^#[0-9]+ *DONE' "artifacts/$t/log" >&2 || true
done
