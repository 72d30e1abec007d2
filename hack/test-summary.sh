#!/usr/bin/env bash
# Adds up the `test result:` lines of a cargo test log into one closing line,
# so that a reader (or CI) sees the whole run's count, not the last crate's.
set -euo pipefail
log=${1:?usage: test-summary.sh CARGO_TEST_LOG}
awk '
  /^test result:/ {
    for (i = 1; i <= NF; i++) {
      if ($(i) ~ /^passed/) passed += $(i - 1)
      if ($(i) ~ /^failed/) failed += $(i - 1)
      if ($(i) ~ /^ignored/) ignored += $(i - 1)
    }
    suites++
  }
  END {
    if (suites == 0) { print "no test suite ran"; exit 1 }
    printf "%d passed, %d failed, %d skipped\n", passed, failed, ignored
    if (passed == 0 || failed > 0) exit 1
  }' "$log"
