# shellcheck shell=bash
# Benchmark fragment, sourced by scripts/bench.sh: `jail trace --one-cpu`
# (tracer and command on one CPU) against the default, on the two workloads
# with targets (python startup ≤ 1.2x, the 200-process shell loop ≤ 1.5x).
# The first command of each file, native, is the baseline.
#
# Expects: $JAIL, $OUT, $RUNS, hyperfine. Writes $OUT/one-cpu-python.json
# and $OUT/one-cpu-sh-loop.json.

one_cpu_bench() {
  local py="/usr/bin/python3 -c 'import json, ssl, sqlite3, decimal'"
  local loop="sh -c 'for i in \$(seq 200); do /bin/true; done'"
  local name cmd
  for name in python sh-loop; do
    if [ "$name" = python ]; then cmd=$py; else cmd=$loop; fi
    (
      cd "$OUT"
      hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$OUT/one-cpu-$name.json" \
        -n native "$cmd" \
        -n "jail trace" "$JAIL trace --backend ptrace --no-image --manifest $OUT/m1.yaml -- $cmd" \
        -n "jail trace --one-cpu" "$JAIL trace --backend ptrace --one-cpu --no-image --manifest $OUT/m2.yaml -- $cmd"
    )
  done
}

one_cpu_bench
