#!/usr/bin/env bash
# Builds every fuzz target and runs each for a bounded time, one after the other, from its
# committed corpus (fuzz/corpus/<target>/, read only: new inputs go to a scratch folder).
# Fails on the first target that crashes, hangs, runs out of memory or leaks, and says which;
# the crashing input is left in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 25 seconds, every target)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Set PONTE_FUZZ_KEEP=1
# to merge the new interesting inputs into the committed corpus afterwards (minimised).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-25}
shift || true
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "error: cargo-fuzz and the nightly toolchain are needed: rustup toolchain install nightly && cargo install cargo-fuzz" >&2
    exit 2
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "building ${#targets[@]} fuzz targets" >&2
cargo +nightly fuzz build

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "$scratch/$t" "artifacts/$t"
    dict=()
    if [ -f "dict/$t.dict" ]; then dict=("-dict=dict/$t.dict"); fi
    echo "== $t: ${seconds}s" >&2
    # Inputs found this run go to the scratch folder first (libFuzzer writes to the first folder).
    if cargo +nightly fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 "${dict[@]}" 2>"$scratch/$t.log"; then
        grep -E '^stat::number_of_executed_units|^Done ' "$scratch/$t.log" | sed "s/^/  $t: /" >&2 || true
        if [ "${PONTE_FUZZ_KEEP:-0}" = 1 ]; then
            # Only the inputs that add coverage join the committed corpus.
            cargo +nightly fuzz run "$t" "corpus/$t" "$scratch/$t" -- -merge=1 -max_len=65536 2>/dev/null
        fi
    else
        echo "FAILED: $t crashed, hung or ran out of memory; the input is in fuzz/artifacts/$t/. Last lines:" >&2
        tail -n 40 "$scratch/$t.log" >&2
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing failed for: ${failed[*]}" >&2
    exit 1
fi
echo "fuzzing: ${#targets[@]} targets ran ${seconds}s each without a crash" >&2
