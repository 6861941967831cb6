#!/bin/bash
# Fuzz every parser of untrusted bytes for a while (libFuzzer through cargo-fuzz; needs a
# nightly toolchain and `cargo install cargo-fuzz`), then shrink the corpora.
#
#   fuzz/run.sh [SECONDS_PER_TARGET (default 120)] [TARGET ...]
#
# Seeds (fuzz/make_seeds.py) are in fuzz/seeds/<target>/; new inputs land in
# fuzz/corpus/<target>/ (commit them after `cmin`); a crash,
# timeout or leak leaves fuzz/artifacts/<target>/<kind>-<hash>: copy it to
# fuzz/regressions/<target>/ (the stable test suite replays that folder), fix, rerun.
# Executions and findings per target are printed at the end (record them in
# RELIABILITY.md).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-120}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(annotations hard_negatives ground_truth safetensors npy prompts clip_config train_config)
fi
summary=()
for t in "${targets[@]}"; do
    log=fuzz/artifacts/$t.log
    mkdir -p fuzz/artifacts/$t
    echo "== $t: ${secs} s"
    # -rss_limit_mb: a parser must not allocate without bound; -timeout: nor hang.
    # -detect_leaks=0: a top-level `anyhow` error may keep a backtrace alive; not a finding.
    status=0
    mkdir -p fuzz/corpus/"$t"
    # New inputs go to the first folder; the seeds are read, never rewritten.
    cargo +nightly fuzz run "$t" fuzz/corpus/"$t" fuzz/seeds/"$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -detect_leaks=0 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    findings=$(find fuzz/artifacts/"$t" -type f | wc -l)
    summary+=("$t: ${runs:-?} executions, exit $status, $findings artifact(s)")
    cargo +nightly fuzz cmin "$t" fuzz/corpus/"$t" >/dev/null 2>&1 || true
done
printf '%s\n' "${summary[@]}"
