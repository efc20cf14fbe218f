#!/usr/bin/env bash
# Run every test of jail. Installs with apt what the tests need when it is
# missing (container tools, compilers, the programs the shipped jail configs
# exercise), then runs `cargo test`. Needs root: the tests trace, chroot and
# unshare namespaces. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# command → Debian package
need=(
  gcc:gcc
  strace:strace
  skopeo:skopeo
  umoci:umoci
  podman:podman
  runc:runc
  debootstrap:debootstrap
  # A second machine with this one's package versions (tests/verifiable.rs).
  dpkg-repack:dpkg-repack
  # A local apt archive for `jail verify --fetch` (tests/verifiable.rs).
  dpkg-scanpackages:dpkg-dev
  sqlite3:sqlite3
  openssl:openssl
  xz:xz-utils
  git:git
  perl:perl
  busybox:busybox-static
  setcap:libcap2-bin
  # The ebpf backend: clang rebuilds bpf/trace.bpf.o (checked below);
  # bpftool lists BPF programs in tests/ebpf.rs.
  clang:clang
  bpftool:bpftool
  # A real registry on 127.0.0.1 for tests/registry.rs.
  docker-registry:docker-registry
  # The programs the shipped jail configs trace (jail-configs/, tests/configs.rs).
  gzip:gzip
  cmp:diffutils
  iconv:libc-bin
  getent:libc-bin
  # Real programs of tests/fidelity.rs, outside the shipped configs.
  gawk:gawk
  ruby:ruby
  php:php-cli
  javac:default-jdk-headless
  node:nodejs
  curl:curl
  file:file
  nginx:nginx-light
  setpriv:util-linux
  su:util-linux
  ping:iputils-ping
)
missing=()
for pair in "${need[@]}"; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
# Headers and libraries for the C fixtures.
[ -e /usr/include/liburing.h ] || missing+=(liburing-dev)
[ -e /usr/bin/python3 ] || missing+=(python3)
[ -e /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
# The SBOM validators (tests/verifiable.rs) go into a venv under target/:
# Debian 12's pip refuses system-wide installs (PEP 668).
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# Files the configs need beyond their commands: /usr/bin/git itself (a
# /usr/local/bin/git does not count), C headers for the gcc config and the
# fixtures (libc6-dev is only a Recommends of gcc), zoneinfo, Perl modules.
[ -e /usr/bin/git ] || missing+=(git)
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
[ -e /usr/share/zoneinfo/US/Eastern ] || missing+=(tzdata)
[ -e /usr/share/perl/5.36/JSON/PP.pm ] || missing+=(perl-modules-5.36)
# tests/fidelity.rs: postgres' initdb.
[ -e /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
# scripts/fuzz.sh: libfuzzer-sys builds libFuzzer with a C++ compiler.
[ -x /usr/bin/g++ ] || missing+=(g++)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: missing packages: ${missing[*]}; run as root or: apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
  echo "scripts/test.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The committed BPF object must be what its source compiles to (the build
# embeds the object, so a stale one would trace with old code).
bpf_check=$(mktemp)
bpf/build.sh "$bpf_check"
if ! cmp -s "$bpf_check" bpf/trace.bpf.o; then
  rm -f "$bpf_check"
  echo "scripts/test.sh: bpf/trace.bpf.o does not match bpf/trace.bpf.c; run bpf/build.sh and commit the object" >&2
  exit 1
fi
rm -f "$bpf_check"
# pyspdxtools (SPDX 2.3) and cyclonedx-python-lib (the CycloneDX 1.6 JSON
# schema) for tests/verifiable.rs, once, from PyPI.
sbom_venv=target/test-data/sbom-venv
if [ ! -x "$sbom_venv/bin/pyspdxtools" ] || ! "$sbom_venv/bin/python" -c 'import cyclonedx.validation.json' 2>/dev/null; then
  mkdir -p target/test-data
  /usr/bin/python3 -m venv "$sbom_venv"
  "$sbom_venv/bin/pip" install -q spdx-tools 'cyclonedx-python-lib[json-validation]'
fi

cargo build --release --bins
cargo test --release "$@"
# The default backend is ebpf where the machine allows it; the tracer's own
# tests run once more under ptrace, the fallback (non-root, no BTF).
JAIL_BACKEND=ptrace cargo test --release --test trace "$@"
# The fuzz targets, 30 s each, on the full run only (not when test.sh is
# given a filter); JAIL_SKIP_FUZZ=1 skips them. Needs the nightly toolchain
# (fuzz.sh says how to install it) and installs cargo-fuzz when missing.
if [ $# -eq 0 ] && [ -z "${JAIL_SKIP_FUZZ:-}" ]; then
  "$(dirname "$0")/fuzz.sh" 30
fi
