# shellcheck shell=bash
# Benchmark fragment, sourced by scripts/bench.sh: the two tracer backends
# side by side. Each workload runs natively (the baseline), under
# `jail trace --backend fanotify` and under the default ptrace backend, all
# writing a manifest and no image, so only tracing and the file set count.
#
# Expects: $JAIL, $OUT (with the workloads bench.sh set up: $OUT/repo),
# hyperfine. Needs root (fanotify with FAN_REPORT_FID on the filesystem).
# Writes $OUT/fanotify-python.json and $OUT/fanotify-git-status.json.

fanotify_bench() {
  local py="/usr/bin/python3 -c 'import json, ssl, sqlite3, decimal'"
  local git="git status --porcelain"
  (
    cd "$OUT"
    hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$OUT/fanotify-python.json" \
      -n native "$py" \
      -n "jail trace --backend fanotify" "$JAIL trace --backend fanotify --no-image --manifest $OUT/mf.yaml -- $py" \
      -n "jail trace (ptrace)" "$JAIL trace --backend ptrace --no-image --manifest $OUT/mp.yaml -- $py"
  )
  (
    cd "$OUT/repo"
    hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$OUT/fanotify-git-status.json" \
      -n native "$git" \
      -n "jail trace --backend fanotify" "$JAIL trace --backend fanotify --no-image --manifest $OUT/mf.yaml -- $git" \
      -n "jail trace (ptrace)" "$JAIL trace --backend ptrace --no-image --manifest $OUT/mp.yaml -- $git"
  )
}

fanotify_bench
