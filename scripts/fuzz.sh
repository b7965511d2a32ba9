#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and prints, per target, the executions,
# the corpus size and the findings. Exits non-zero when any target crashed (or failed to run).
#
#   scripts/fuzz.sh                          # 30 s per target
#   FUZZ_SECONDS=60 scripts/fuzz.sh          # longer
#   FUZZ_TARGETS="frames connect" scripts/fuzz.sh
#
# Not part of CI's test command (too slow). Needs only the machine's stable Rust: cargo-fuzz's
# nightly flags (-Zsanitizer, sancov) are enabled with RUSTC_BOOTSTRAP=1. Seeds are in
# fuzz/corpus/<target>/ (committed, small); the corpus a run grows goes to fuzz/work/<target>/
# (ignored), crashes to fuzz/artifacts/<target>/. A crash is reproduced with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/crash-…   (from fuzz/)
set -uo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked || exit 1
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
echo "== building the fuzz targets ($(cargo fuzz --version))"
if ! cargo fuzz build >build.log 2>&1; then
  tail -n 40 build.log
  echo "fuzz: the targets do not build (fuzz/build.log)"
  exit 1
fi

failed=0
summary=()
for t in $targets; do
  mkdir -p "work/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  log="work/$t.log"
  echo "== $t: ${seconds} s"
  # Longest input: past each parser's own limit where that is cheap (libFuzzer would otherwise
  # take the longest seed as the limit).
  case "$t" in
    http_head) max_len=9300 ;;   # MAX_HEAD (8 KiB) + one 1 KiB read
    pairing_code) max_len=256 ;;
    ssh_policy) max_len=512 ;;
    *) max_len=4096 ;;           # the pairing URI limit is 2 KiB
  esac
  # The first corpus directory receives new inputs; the seeds are only read.
  cargo fuzz run "$t" "work/$t" "corpus/$t" -- -max_len="$max_len" \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  after=$(find "artifacts/$t" -type f | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  [ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
  corpus=$(grep -Eo 'corp: [0-9]+' "$log" | tail -n 1 | grep -Eo '[0-9]+')
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 | grep -Eo '[0-9]+')
  findings=$((after - before))
  status=ok
  if [ "$rc" -ne 0 ] || [ "$findings" -gt 0 ]; then
    status=CRASH
    failed=1
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 8
    echo "   (log: fuzz/$log)"
  fi
  line=$(printf '%-13s %12s execs  corpus %5s  cov %5s  findings %s  %s' \
    "$t" "${execs:-?}" "${corpus:-?}" "${cov:-?}" "$findings" "$status")
  echo "   $line"
  summary+=("$line")
done

echo "== summary (${seconds} s per target)"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz: crashes found (fuzz/artifacts/)"
  exit 1
fi
echo "fuzz: no findings"
