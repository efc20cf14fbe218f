#!/usr/bin/env bash
# Benchmarks of jail, side by side in one run, written to docs/benchmarks.md.
#
#   scripts/bench.sh            all benchmarks
#   scripts/bench.sh trace      only the tracer workloads
#   RUNS=30 scripts/bench.sh    more runs per command (default 20)
#
# Tracer: four workloads, each timed natively, under `jail trace` (ptrace),
# under `jail trace --backend ebpf`, under `strace -f` and under
# `strace -f --seccomp-bpf`; ratios are medians over
# the native median. Then every fragment in scripts/bench.d/*.sh (ldd, pack,
# fanotify, …) runs; each writes hyperfine JSON into $OUT, the first command
# of each file being the baseline its ratios are computed against; a
# fragment that measures bytes (fleet) writes $OUT/NAME.section.md instead.
# Needs root (ptrace of setuid-free programs works unprivileged, but the
# fragments may need it). Installs hyperfine, strace and time with apt.
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
only=${1:-all}
RUNS=${RUNS:-20}
export RUNS

missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v strace >/dev/null || missing+=(strace)
[ -x /usr/bin/time ] || missing+=(time)
command -v gcc >/dev/null || missing+=(gcc)
command -v git >/dev/null || missing+=(git)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench.sh: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release --bins -q
export JAIL=$TOP/target/release/jail
OUT=$(mktemp -d /tmp/jail-bench.XXXXXX)
export OUT
trap 'rm -rf "$OUT"' EXIT
PY=/usr/bin/python3

# Workloads -----------------------------------------------------------------
mkdir -p "$OUT/gcc" "$OUT/repo"
cat > "$OUT/gcc/small.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
int main(int argc, char **argv) { printf("%f %zu\n", sqrt(argc), strlen(argv[0])); return EXIT_SUCCESS; }
EOF
(
  cd "$OUT/repo"
  git init -q .
  for d in $(seq 40); do
    mkdir -p "d$d"
    for f in $(seq 50); do echo "$d $f" > "d$d/f$f.txt"; done
  done
  git add -A && git -c user.email=b@e -c user.name=bench commit -qm init
  echo change >> d1/f1.txt
)

declare -a NAMES CMDS DIRS
NAMES=(python sh-loop gcc git-status)
CMDS=(
  "$PY -c 'import json, ssl, sqlite3, decimal'"
  "sh -c 'for i in \$(seq 200); do /bin/true; done'"
  "gcc -c small.c -o small.o"
  "git status --porcelain"
)
DIRS=("$OUT" "$OUT" "$OUT/gcc" "$OUT/repo")

run_tracing() {
  for i in "${!NAMES[@]}"; do
    local name=${NAMES[$i]} cmd=${CMDS[$i]} dir=${DIRS[$i]}
    echo "== $name: $cmd" >&2
    (
      cd "$dir"
      hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$OUT/trace-$name.json" \
        -n native "$cmd" \
        -n jail "$JAIL trace --backend ptrace --no-image --manifest $OUT/m-$name.yaml -- $cmd" \
        -n jail-ebpf "$JAIL trace --backend ebpf --no-image --manifest $OUT/e-$name.yaml -- $cmd" \
        -n strace "strace -f -o /dev/null $cmd" \
        -n strace-seccomp "strace -f --seccomp-bpf -e trace=%file,%process -o /dev/null $cmd" >&2
    )
  done
  # The command's own time under each tracer (`command_us`: from its
  # release to its exit, without jail's start, the BPF load and the file
  # set), and the ebpf backend's load+attach time (`setup_ms`) on its own.
  # Each round runs the command natively (hyperfine: one warm-up, the
  # median of three), then under each backend, so that a drift of the
  # shared machine moves all three alike.
  for i in "${!NAMES[@]}"; do
    (
      cd "${DIRS[$i]}"
      : > "$OUT/cmd-native-${NAMES[$i]}"
      : > "$OUT/cmd-ptrace-${NAMES[$i]}"
      : > "$OUT/cmd-ebpf-${NAMES[$i]}"
      for _ in $(seq "$RUNS"); do
        hyperfine -N --warmup 1 --runs 3 --export-json "$OUT/n.json" "${CMDS[$i]}" >/dev/null 2>&1
        $PY -c 'import json, statistics, sys
t = json.load(open(sys.argv[1]))["results"][0]["times"]
print(int(statistics.median(t) * 1e6), 0)' "$OUT/n.json" >> "$OUT/cmd-native-${NAMES[$i]}"
        for b in ptrace ebpf; do
          eval "$JAIL trace --backend $b --no-image --json --manifest $OUT/c.yaml -- ${CMDS[$i]}" 2>/dev/null |
            $PY -c 'import json,sys; s=json.load(sys.stdin); print(s["command_us"], s["setup_ms"])' >> "$OUT/cmd-$b-${NAMES[$i]}"
        done
      done
    )
  done
  # Peak memory of the tracer on the larger workloads.
  for i in 2 3; do
    (
      cd "${DIRS[$i]}"
      eval "/usr/bin/time -f %M -o $OUT/rss-${NAMES[$i]} $JAIL trace --no-image --manifest $OUT/m.yaml -- ${CMDS[$i]}" >/dev/null 2>&1
    )
  done
}

run_fragments() {
  for f in scripts/bench.d/*.sh; do
    [ -e "$f" ] || continue
    echo "== fragment $f" >&2
    # shellcheck source=/dev/null
    ( source "$f" ) >&2
  done
}

case $only in
  all) run_tracing; run_fragments ;;
  trace) run_tracing ;;
  *) for f in scripts/bench.d/"$only".sh; do ( source "$f" ) >&2; done ;;
esac

# Report --------------------------------------------------------------------
$PY - "$OUT" "$only" "$RUNS" <<'EOF' > "$OUT/report.md"
import glob, json, os, platform, statistics, subprocess, sys, datetime
out, only, runs = sys.argv[1], sys.argv[2], sys.argv[3]

def median_ms(r):
    return statistics.median(r["times"]) * 1000

def cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"

print("# Benchmarks\n")
print(f"Measured {datetime.date.today().isoformat()} by `scripts/bench.sh {only if only != 'all' else ''}`".rstrip() + f" with hyperfine ({runs} runs per command, medians).")
print(f"Machine: {os.cpu_count()} cores ({cpu()}), kernel {platform.release()}.\n")
print("Numbers are medians of wall time; ratios divide by the first row of each table. The machine is shared, so compare rows of one table (measured side by side), not tables of different days.\n")

traces = sorted(glob.glob(f"{out}/trace-*.json"))
if traces:
    print("## Tracing overhead\n")
    print("Whole run: `jail trace` end to end (jail's start, the ebpf backend's load and attach, the trace, the file set and the manifest), against the command run natively.\n")
    print("| workload | native | jail trace --backend ptrace | jail trace --backend ebpf | strace -f | strace -f --seccomp-bpf |")
    print("| --- | --- | --- | --- | --- | --- |")
    for path in traces:
        name = os.path.basename(path)[6:-5]
        res = {r["command"]: r for r in json.load(open(path))["results"]}
        base = median_ms(res["native"])
        cells = [f"{base:.1f} ms"]
        for k in ["jail", "jail-ebpf", "strace", "strace-seccomp"]:
            if k not in res:
                cells.append("–")
                continue
            m = median_ms(res[k])
            cells.append(f"{m:.1f} ms ({m / base:.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    rss = []
    for name in ["gcc", "git-status"]:
        p = f"{out}/rss-{name}"
        if os.path.exists(p):
            rss.append(f"{name}: {int(open(p).read().strip()) / 1024:.1f} MiB")
    if rss:
        print("Peak RSS of `jail trace` (GNU time): " + ", ".join(rss) + ".\n")
    cmd = {}
    for path in glob.glob(f"{out}/cmd-*-*"):
        backend, name = os.path.basename(path)[4:].split("-", 1)
        rows = [l.split() for l in open(path) if l.strip()]
        if rows:
            cmd[(backend, name)] = (statistics.median(int(r[0]) for r in rows) / 1000,
                                    statistics.median(int(r[1]) for r in rows))
    if cmd:
        print("### The command's own time\n")
        print("What tracing costs the program itself: the trace's `command_us` (from the command's release, once the tracer is ready, to its exit; median of the same number of runs), against the native median of runs interleaved with them (each round: native by hyperfine — one warm-up, the median of three — then ptrace, then ebpf; the native time also counts hyperfine's fork, which `command_us` does not: well under a millisecond). Not in it: jail's own start, the ebpf backend's load and attach (last column, the trace's `setup_ms`), and the file set.\n")
        print("| workload | native | jail trace --backend ptrace | jail trace --backend ebpf | ebpf load+attach |")
        print("| --- | --- | --- | --- | --- |")
        for path in traces:
            name = os.path.basename(path)[6:-5]
            res = {r["command"]: r for r in json.load(open(path))["results"]}
            base = cmd[("native", name)][0] if ("native", name) in cmd else median_ms(res["native"])
            cells = [f"{base:.1f} ms"]
            for b in ["ptrace", "ebpf"]:
                if (b, name) in cmd:
                    m = cmd[(b, name)][0]
                    cells.append(f"{m:.1f} ms ({m / base:.2f}x)")
                else:
                    cells.append("–")
            setup = cmd.get(("ebpf", name))
            cells.append(f"{setup[1]:.0f} ms" if setup else "–")
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()

others = sorted(set(glob.glob(f"{out}/*.json")) - set(traces))
for path in others:
    data = json.load(open(path))["results"]
    title = os.path.basename(path)[:-5]
    print(f"## {title}\n")
    print("| command | median | ratio |")
    print("| --- | --- | --- |")
    base = median_ms(data[0])
    for r in data:
        m = median_ms(r)
        cmd = r["command"].replace("|", "\\|")
        print(f"| `{cmd}` | {m:.1f} ms | {m / base:.2f}x |")
    print()

# Fragments that measure bytes, not time, write their own section.
for path in sorted(glob.glob(f"{out}/*.section.md")):
    print(open(path).read())

print("## Command lines\n")
print("Tracing workloads (each run natively, then as `jail trace --backend ptrace --no-image --manifest FILE -- CMD`, the same with `--backend ebpf`, `strace -f -o /dev/null CMD`, `strace -f --seccomp-bpf -e trace=%file,%process -o /dev/null CMD`):\n")
print("- python: `/usr/bin/python3 -c 'import json, ssl, sqlite3, decimal'`")
print("- sh-loop: `sh -c 'for i in $(seq 200); do /bin/true; done'`")
print("- gcc: `gcc -c small.c` (a 6-line file including stdio, stdlib, string, math)")
print("- git-status: `git status --porcelain` in a repository of 2,000 files with one modified")
EOF
if [ -s "$OUT/report.md" ] && [ "$only" != all ]; then
  # A partial run would drop every other section: print it, keep the page.
  cat "$OUT/report.md"
  echo "bench.sh: partial run ($only): docs/benchmarks.md not changed" >&2
elif [ -s "$OUT/report.md" ]; then
  extra=docs/benchmarks-notes.md
  { cat "$OUT/report.md"; [ -f "$extra" ] && { echo; cat "$extra"; }; } > docs/benchmarks.md
  cat docs/benchmarks.md
fi
