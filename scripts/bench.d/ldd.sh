# shellcheck shell=bash
# Benchmark fragment, sourced by scripts/bench.sh: `jail ldd --list` over
# every ELF file of /usr/bin against running ldd on each of them (one after
# the other, as a script would, and $(nproc) at a time).
#
# Expects: $JAIL, the release jail binary; $OUT, a directory for results;
# hyperfine on PATH. Writes $OUT/ldd-files.txt (the files measured) and
# $OUT/ldd.json (hyperfine's export), and prints the speed-up.

ldd_bench() {
  local list="$OUT/ldd-files.txt" f magic
  : >"$list"
  # ELF files only: ldd and jail both refuse scripts. `read -N 4` reads the
  # magic without a process per file.
  for f in /usr/bin/*; do
    [ -f "$f" ] || continue
    LC_ALL=C IFS= read -r -N 4 magic <"$f" 2>/dev/null || continue
    [ "$magic" = $'\x7fELF' ] && printf '%s\n' "$f" >>"$list"
  done
  echo "ldd bench: $(wc -l <"$list") ELF files in /usr/bin" >&2

  # --ignore-failure: ldd exits 1 on static programs, jail exits 1 if some
  # library is missing; both still do all the work.
  hyperfine --warmup 1 --min-runs 3 --ignore-failure \
    --export-json "$OUT/ldd.json" \
    --command-name "jail ldd --list" "xargs -a '$list' -d '\n' '$JAIL' ldd --list >/dev/null 2>&1" \
    --command-name "ldd (one by one)" "xargs -a '$list' -d '\n' -n1 ldd >/dev/null 2>&1" \
    --command-name "ldd ($(nproc) in parallel)" "xargs -a '$list' -d '\n' -n1 -P '$(nproc)' ldd >/dev/null 2>&1"

  python3 - "$OUT/ldd.json" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
jail = r["jail ldd --list"]
for name, t in r.items():
    if name != "jail ldd --list":
        print(f"ldd bench: jail ldd --list {jail * 1000:.0f} ms, {name} {t * 1000:.0f} ms: {t / jail:.1f}x faster")
PY
}

ldd_bench
