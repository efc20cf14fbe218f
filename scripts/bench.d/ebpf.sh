# shellcheck shell=bash
# Benchmark fragment, sourced by scripts/bench.sh: a syscall-heavy workload
# (every file under /usr/share/doc read through cat) natively, under
# `jail trace --backend ebpf` and under the ptrace backend. The workload is
# cut to a few seconds (not the 30 s of issue 17) to keep the machine time of
# a bench run small; RUNS_EBPF sets its runs (default 3).
#
# Expects: $JAIL, $OUT, hyperfine; root (loading BPF programs).
# Writes $OUT/ebpf-syscall-heavy.json.

ebpf_bench() {
  local w="sh -c 'find /usr/share/doc -type f | xargs cat > /dev/null'"
  hyperfine -N --warmup 1 --runs "${RUNS_EBPF:-3}" --export-json "$OUT/ebpf-syscall-heavy.json" \
    -n native "$w" \
    -n "jail trace --backend ebpf" "$JAIL trace --backend ebpf --no-image --manifest $OUT/me.yaml -- $w" \
    -n "jail trace (ptrace)" "$JAIL trace --no-image --manifest $OUT/mp.yaml -- $w"
}

ebpf_bench
