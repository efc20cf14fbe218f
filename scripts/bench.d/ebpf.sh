# shellcheck shell=bash
# Benchmark fragment, sourced by scripts/bench.sh: issue 17's 30-second
# syscall-heavy workload. One pass reads every file under /usr through cat
# (`find /usr -type f -print0 | xargs -0 cat > /dev/null`); a first native
# pass warms the page cache and calibrates how many passes make about 30 s
# (EBPF_HEAVY_SECONDS). Then the loop runs natively (hyperfine), and under
# `jail trace --backend ebpf` and the ptrace backend, RUNS_EBPF times each
# (default 3), comparing the trace's `command_us` (the command's own run,
# without jail's start and the file set of ~100k files) with the native
# median; the whole run is shown beside it.
#
# Expects: $JAIL, $OUT, $PY, hyperfine; root (loading BPF programs).
# Writes $OUT/ebpf-heavy.section.md.

ebpf_bench() {
  local runs=${RUNS_EBPF:-3} target=${EBPF_HEAVY_SECONDS:-30}
  local pass="find /usr -type f -print0 | xargs -0 cat > /dev/null"
  local t0 t1 passes w
  sh -c "$pass" 2>/dev/null || true
  t0=$(date +%s%N)
  sh -c "$pass" 2>/dev/null || true
  t1=$(date +%s%N)
  passes=$(( (target * 1000000000 + (t1 - t0) / 2) / (t1 - t0) ))
  [ "$passes" -ge 1 ] || passes=1
  w="sh -c 'for i in \$(seq $passes); do $pass; done 2>/dev/null'"
  echo "== syscall-heavy: $passes passes of about $(( (t1 - t0) / 1000000 )) ms" >&2
  hyperfine -N --runs "$runs" --ignore-failure --export-json "$OUT/heavy-native.hyperfine" -n native "$w" >&2
  for b in ebpf ptrace; do
    for _ in $(seq "$runs"); do
      local s e
      s=$(date +%s%N)
      eval "$JAIL trace --backend $b --no-image --json --manifest $OUT/heavy.yaml -- $w" 2>/dev/null |
        $PY -c 'import json,sys; s=json.load(sys.stdin); print(s["command_us"], s["setup_ms"], end=" ")'
      e=$(date +%s%N)
      echo " $(( (e - s) / 1000 ))"
    done > "$OUT/heavy-$b"
  done
  $PY - "$OUT" "$passes" "$runs" <<'PY' > "$OUT/ebpf-heavy.section.md"
import json, statistics, sys
out, passes, runs = sys.argv[1], sys.argv[2], sys.argv[3]
native = statistics.median(json.load(open(f"{out}/heavy-native.hyperfine"))["results"][0]["times"])
print("## Syscall-heavy, 30 seconds (issue 17)\n")
print(f"`{passes}` passes of `find /usr -type f -print0 | xargs -0 cat > /dev/null` (page cache warm), {runs} runs each, medians. The command's own time is the trace's `command_us`; the whole run adds jail's start, the BPF load and the file set of every file read.\n")
print("| | the command | ratio | whole run | load+attach |")
print("| --- | --- | --- | --- | --- |")
print(f"| native | {native:.2f} s | 1.00x | | |")
for b, label in [("ebpf", "jail trace --backend ebpf"), ("ptrace", "jail trace (ptrace)")]:
    rows = [l.split() for l in open(f"{out}/heavy-{b}") if l.strip()]
    cmd = statistics.median(int(r[0]) for r in rows) / 1e6
    setup = statistics.median(int(r[1]) for r in rows)
    whole = statistics.median(int(r[2]) for r in rows) / 1e6
    print(f"| {label} | {cmd:.2f} s | {cmd / native:.3f}x | {whole:.2f} s | {setup:.0f} ms |")
print()
PY
}

ebpf_bench
