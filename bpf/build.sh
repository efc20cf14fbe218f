#!/bin/sh
# Rebuild bpf/trace.bpf.o from bpf/trace.bpf.c (docs/tracing.md).
# Needs clang (Debian 12: clang 14) and libbpf-dev's headers:
#   apt-get install -y clang libbpf-dev
# The object is committed so that building jail needs only Rust;
# scripts/test.sh rebuilds it and fails when it differs from the committed one.
set -eu
cd "$(dirname "$0")"
out=${1:-trace.bpf.o}
clang -target bpf -O2 -g -Wall -Werror -D__TARGET_ARCH_x86 \
	-fdebug-prefix-map="$(pwd)"=bpf -fno-ident \
	-I/usr/include/x86_64-linux-gnu -c trace.bpf.c -o "$out"
