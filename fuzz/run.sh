#!/usr/bin/env bash
# Runs every fuzz target (or those named after the time) for SECONDS seconds each, one after
# another, and stops at the first finding (cargo fuzz exits non-zero; the input is saved under
# fuzz/artifacts/<target>/).
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]      SECONDS defaults to 20
#
# cargo fuzz needs a nightly compiler: `cargo +nightly` where rustup has one, else the stable
# compiler with RUSTC_BOOTSTRAP=1 (no other toolchain can be installed on every machine).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-20}
shift || true

if cargo +nightly --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <("${fuzz[@]}" list)
fi

for target in "${targets[@]}"; do
    echo "-- fuzz target $target, ${seconds} s"
    mkdir -p "corpus/$target"
    seeds=()
    if [ -d "seeds/$target" ]; then
        seeds=("seeds/$target")
    fi
    # -timeout: one input taking this long (wall clock) is a finding (a hang).
    "${fuzz[@]}" run "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1
done
