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
  sqlite3:sqlite3
  openssl:openssl
  xz:xz-utils
  git:git
  perl:perl
  busybox:busybox-static
  setcap:libcap2-bin
  # A real registry on 127.0.0.1 for tests/registry.rs.
  docker-registry:docker-registry
  # The programs the shipped jail configs trace (jail-configs/, tests/configs.rs).
  gzip:gzip
  cmp:diffutils
  iconv:libc-bin
  getent:libc-bin
)
missing=()
for pair in "${need[@]}"; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
# Headers and libraries for the C fixtures.
[ -e /usr/include/liburing.h ] || missing+=(liburing-dev)
[ -e /usr/bin/python3 ] || missing+=(python3)
# Files the configs need beyond their commands: /usr/bin/git itself (a
# /usr/local/bin/git does not count), C headers for the gcc config and the
# fixtures (libc6-dev is only a Recommends of gcc), zoneinfo, Perl modules.
[ -e /usr/bin/git ] || missing+=(git)
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
[ -e /usr/share/zoneinfo/US/Eastern ] || missing+=(tzdata)
[ -e /usr/share/perl/5.36/JSON/PP.pm ] || missing+=(perl-modules-5.36)
# scripts/fuzz.sh: libfuzzer-sys builds libFuzzer with a C++ compiler.
[ -x /usr/bin/g++ ] || missing+=(g++)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: missing packages: ${missing[*]}; run as root or: apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
  echo "scripts/test.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --release --bins
cargo test --release "$@"
# The fuzz targets, 30 s each, on the full run only (not when test.sh is
# given a filter); JAIL_SKIP_FUZZ=1 skips them. Needs the nightly toolchain
# (fuzz.sh says how to install it) and installs cargo-fuzz when missing.
if [ $# -eq 0 ] && [ -z "${JAIL_SKIP_FUZZ:-}" ]; then
  "$(dirname "$0")/fuzz.sh" 30
fi
