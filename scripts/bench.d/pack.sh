# shellcheck shell=bash
# Benchmark fragment: `jail pack` of a ~1 GB tree against the reference
# pipeline `tar --sort=name … | gzip -n -6`. Sourced by scripts/bench.sh,
# which sets JAIL (the release binary) and OUT (a scratch directory).
# Writes $OUT/pack.json (hyperfine; the first command, the tar | gzip
# pipeline, is the baseline) and $OUT/pack.md, and prints the ratio.
#
# The tree is a copy of PACK_BENCH_DIRS (default /usr/bin and /usr/share,
# about 1 GB here) so both sides read the same files from the page cache.
# Installs hyperfine with apt when missing.

pack_bench() {
  local dirs=${PACK_BENCH_DIRS:-"/usr/bin /usr/share"}
  # Each run packs ~1 GB: a few runs are enough (not bench.sh's RUNS).
  local runs=${PACK_BENCH_RUNS:-3}
  local tree="$OUT/pack-tree"
  : "${JAIL:?JAIL must name the jail release binary}" "${OUT:?OUT must name a scratch directory}"
  if ! command -v hyperfine >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null || {
      echo "bench pack: hyperfine is missing: apt-get install -y hyperfine" >&2
      return 2
    }
  fi
  if [ ! -d "$tree" ]; then
    mkdir -p "$tree"
    local d
    for d in $dirs; do
      mkdir -p "$tree$(dirname "$d")"
      cp -a "$d" "$tree$d"
    done
  fi
  local size
  size=$(du -sb "$tree" | cut -f1)
  echo "bench pack: tree $tree: $((size / 1000000)) MB, $(find "$tree" | wc -l) paths, $(nproc) cores" >&2

  hyperfine --warmup 1 --runs "$runs" \
    --export-markdown "$OUT/pack.md" --export-json "$OUT/pack.json" \
    -n "tar | gzip -n -6" "tar --sort=name --owner=0 --group=0 --numeric-owner -c -C '$tree' . | gzip -n -6 > '$OUT/pack-tar.tar.gz'" \
    -n "jail pack (gzip)" "'$JAIL' pack '$tree' -o '$OUT/pack-jail.tar' 2>/dev/null" \
    -n "jail pack (zstd)" "'$JAIL' pack '$tree' -o '$OUT/pack-jail-zstd.tar' --compression zstd 2>/dev/null"

  python3 - "$OUT/pack.json" "$OUT/pack-jail.tar" "$OUT/pack-tar.tar.gz" <<'PY'
import json, os, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
j, t = r["jail pack (gzip)"]["mean"], r["tar | gzip -n -6"]["mean"]
print(f"bench pack: jail pack {j:.2f} s, tar | gzip {t:.2f} s: jail is {t / j:.2f}x the pipeline's speed")
print(f"bench pack: output {os.path.getsize(sys.argv[2]) / 1e6:.1f} MB (jail, gzip) vs {os.path.getsize(sys.argv[3]) / 1e6:.1f} MB (tar | gzip)")
PY
}

pack_bench
