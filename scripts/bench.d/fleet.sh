# shellcheck shell=bash
# Benchmark fragment: a fleet of python services sharing one base (issue
# 16). Sourced by scripts/bench.sh, which sets JAIL (the release binary) and
# OUT (a scratch directory); runs alone as `scripts/bench.sh fleet`.
#
# A python base is traced with a broad workload and pushed to a
# docker-registry on 127.0.0.1; five apps using different stdlib modules
# (json, sqlite3, decimal, ssl, xml+csv; each apps/NAME/app.py, so no
# module shadows the stdlib's) are traced with `--base` and
# pushed to their own repositories (the base's layers are mounted, not
# uploaded). For comparison each app is also traced as one layer
# (`--layers 1`) and with package layers but no base. Writes
# $OUT/fleet.section.md (a section of docs/benchmarks.md) and prints it.
# Installs docker-registry with apt when missing.

fleet_bench() {
  : "${JAIL:?JAIL must name the jail release binary}" "${OUT:?OUT must name a scratch directory}"
  if ! command -v docker-registry >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null || {
      echo "bench fleet: docker-registry is missing: apt-get install -y docker-registry" >&2
      return 2
    }
  fi
  local dir="$OUT/fleet"
  rm -rf "$dir"
  mkdir -p "$dir/cache"
  export XDG_CACHE_HOME="$dir/cache"

  # The registry, on a free port, storage in $dir/storage.
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat > "$dir/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: 127.0.0.1:$port
EOF
  docker-registry serve "$dir/registry.yml" > "$dir/registry.log" 2>&1 &
  local reg_pid=$!
  # shellcheck disable=SC2064
  trap "kill $reg_pid 2>/dev/null" RETURN
  local host="127.0.0.1:$port" i
  for i in $(seq 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://$host/v2/')" 2>/dev/null && break
    sleep 0.1
  done

  mkdir -p "$dir/apps/base"
  cat > "$dir/apps/base/app.py" <<'EOF'
import csv, decimal, io, json, sqlite3, ssl, xml.etree.ElementTree as ET
ssl.create_default_context()
db = sqlite3.connect(":memory:")
db.execute("create table t (x)")
print(json.dumps([str(decimal.Decimal("1.1") * 3), ET.fromstring("<a>b</a>").text,
                  next(csv.reader(io.StringIO("c,d")))]))
EOF
  mkdir -p "$dir/apps/json"
  cat > "$dir/apps/json/app.py" <<'EOF'
import json
print(json.dumps({"service": "json", "items": [1, 2, 3]}, sort_keys=True))
EOF
  mkdir -p "$dir/apps/sqlite3"
  cat > "$dir/apps/sqlite3/app.py" <<'EOF'
import sqlite3
db = sqlite3.connect(":memory:")
db.execute("create table t (name text)")
db.executemany("insert into t values (?)", [("a",), ("b",)])
print(db.execute("select count(*) from t").fetchone()[0])
EOF
  mkdir -p "$dir/apps/decimal"
  cat > "$dir/apps/decimal/app.py" <<'EOF'
import decimal
print(sum(decimal.Decimal(p) for p in ["1.10", "2.20", "3.30"]))
EOF
  mkdir -p "$dir/apps/ssl"
  cat > "$dir/apps/ssl/app.py" <<'EOF'
import ssl
ctx = ssl.create_default_context()
print(ctx.verify_mode == ssl.CERT_REQUIRED, ssl.OPENSSL_VERSION.split()[0])
EOF
  mkdir -p "$dir/apps/xmlcsv"
  cat > "$dir/apps/xmlcsv/app.py" <<'EOF'
import csv, io, xml.etree.ElementTree as ET
rows = list(csv.reader(io.StringIO("a,1\nb,2\n")))
root = ET.Element("rows")
for name, n in rows:
    ET.SubElement(root, "row", name=name).text = n
print(ET.tostring(root).decode())
EOF

  local py=/usr/bin/python3 app
  (
    set -e
    cd "$dir"
    "$JAIL" trace --json -o base.tar --tag fleet/base:1 --push "$host/base:1" \
      --insecure-registry "$host" -- "$py" apps/base/app.py > base.json 2>> trace.log
    for app in json sqlite3 decimal ssl xmlcsv; do
      "$JAIL" trace --json -o "on-$app.tar" --tag "fleet/$app:1" --base base.tar \
        --push "$host/$app:1" --insecure-registry "$host" \
        -- "$py" "apps/$app/app.py" > "on-$app.json" 2>> trace.log
      "$JAIL" trace --json -o "one-$app.tar" --tag "fleet/$app:1" --layers 1 \
        -- "$py" "apps/$app/app.py" > "one-$app.json" 2>> trace.log
      "$JAIL" trace --json -o "layered-$app.tar" --tag "fleet/$app:1" \
        -- "$py" "apps/$app/app.py" > "layered-$app.json" 2>> trace.log
    done
  ) || {
    echo "bench fleet: a trace failed; see $dir/trace.log" >&2
    tail -20 "$dir/trace.log" >&2
    return 1
  }

  python3 - "$dir" > "$OUT/fleet.section.md" <<'PY'
import glob, json, os, sys
d = sys.argv[1]
apps = ["json", "sqlite3", "decimal", "ssl", "xmlcsv"]
load = lambda n: json.load(open(os.path.join(d, n)))["image"]
base = load("base.json")

def stored(tar):
    # Every blob of the image as written: sizes from the OCI archive.
    import tarfile
    sizes = {}
    with tarfile.open(os.path.join(d, tar)) as t:
        for m in t.getmembers():
            if m.name.startswith("blobs/sha256/") and m.isfile():
                sizes["sha256:" + m.name.rsplit("/", 1)[1]] = m.size
    return sizes

def unique(images):
    u = {}
    for s in images:
        u.update(s)
    return sum(u.values())

single = {a: stored(f"one-{a}.tar") for a in apps}
layered = {a: stored(f"layered-{a}.tar") for a in apps}
on = {a: stored(f"on-{a}.tar") for a in apps}
base_blobs = stored("base.tar")
reg = 0
for root, _, files in os.walk(os.path.join(d, "storage/docker/registry/v2/blobs")):
    reg += sum(os.path.getsize(os.path.join(root, f)) for f in files if f == "data")
u_single = unique(single.values())
u_layered = unique(layered.values())
u_base = unique([base_blobs] + list(on.values()))
pushes = [load("base.json")] + [load(f"on-{a}.json") for a in apps]
up = sum(p["pushed"]["uploaded_bytes"] for p in pushes)
mounted = sum(p["pushed"]["mounted_bytes"] for p in pushes)
mb = lambda n: f"{n / 1e6:.2f} MB"
print("## Fleet: five python services on one base (issue 16)\n")
print("`scripts/bench.d/fleet.sh`: a python base traced with a broad workload (json, sqlite3, decimal, ssl, xml, csv) and pushed to a docker-registry on 127.0.0.1; five apps, each using other stdlib modules, traced with `--base` and pushed to their own repositories. Bytes are blob bytes (gzip layers, configs, manifests).\n")
print("| the five apps as | unique bytes stored | vs single-layer |")
print("| --- | --- | --- |")
print(f"| single-layer images (`--layers 1`) | {mb(u_single)} | 1.00 |")
print(f"| package layers, no base (default) | {mb(u_layered)} | {u_layered / u_single:.2f} |")
print(f"| base + app layers (`--base`), with the base | {mb(u_base)} | {u_base / u_single:.2f} ({(1 - u_base / u_single) * 100:.0f}% less) |")
print(f"\nThe registry's blob store after the pushes (base and five apps, with `--base`): {mb(reg)}. Uploaded for the whole fleet: {mb(up)} (the base, then each app's own layers and config); mounted from the base's repository instead of uploaded: {mb(mounted)}.\n")
print("| app | single-layer image | on the base: image (its own layers) | own layers / single-layer |")
print("| --- | --- | --- | --- |")
for a in apps:
    img = load(f"on-{a}.json")
    own = sum(l["size"] for l in img["layers"] if l["kind"] != "base")
    total = sum(l["size"] for l in img["layers"])
    one = load(f"one-{a}.json")["compressed_size"]
    print(f"| {a} | {mb(one)} | {mb(total)} ({mb(own)}) | {own / one * 100:.1f}% |")
print()
PY
  cat "$OUT/fleet.section.md"
}

fleet_bench
