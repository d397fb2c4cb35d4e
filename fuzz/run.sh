#!/usr/bin/env bash
# Run every libFuzzer target built in BUILD for SECONDS each: `make fuzz FUZZ_SECONDS=N` calls this.
# Seeds come from fuzz/corpus/<target>/ (committed, small); what the fuzzer finds goes to BUILD/corpus/<target>/
# (kept between runs, not committed); a crash leaves its input in BUILD/crashes/ and fails the run.
# Usage: fuzz/run.sh BUILD SECONDS [TARGET...]
set -uo pipefail
build=${1:?usage: fuzz/run.sh BUILD SECONDS [TARGET...]}
seconds=${2:?usage: fuzz/run.sh BUILD SECONDS [TARGET...]}
shift 2
targets=("$@")
if ((${#targets[@]} == 0)); then
    for f in "$(dirname "$0")"/fuzz_*.c; do t=$(basename "$f" .c); targets+=("${t#fuzz_}"); done
fi
mkdir -p "$build/crashes"
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$build/corpus/$t"
    log="$build/fuzz_$t.log"
    # -rss_limit_mb / -malloc_limit_mb: a parser that believes a lying size and allocates gigabytes is a finding.
    "$build/fuzz_$t" "$build/corpus/$t" "fuzz/corpus/$t" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
        -artifact_prefix="$build/crashes/$t-" >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    if ((rc == 0)); then
        echo "fuzz $t: ${seconds}s, ${runs:-?} inputs, ${cov:-cov: ?}, no finding"
    else
        echo "fuzz $t: FAILED (exit $rc): see $log and $build/crashes/"
        grep -E "^(==[0-9]+==ERROR|SUMMARY|.*runtime error)" "$log" | head -5
        failed+=("$t")
    fi
done
if ((${#failed[@]} > 0)); then
    echo "fuzz: findings in ${failed[*]}"
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no finding"
