#!/usr/bin/env python3
"""Check that the library's top-level modules import each other as a DAG.

A module is a directory or file directly under src/ (src/fileset/,
src/manifest.rs, ...); src/cli/ and src/main.rs are the binary and are left
out. An edge A -> B is any `crate::B` path written in a file of A (use
declarations, qualified paths; comments and doc links are skipped). Prints
the graph with --print; `--src DIR` checks another source tree (the test of
this script uses it). Exits 1 naming a cycle when there is one.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
if "--src" in sys.argv:
    ROOT = sys.argv[sys.argv.index("--src") + 1]
SKIP = {"cli", "main", "lib"}
CRATE_PATH = re.compile(r"\bcrate::(\w+)")
USE_GROUP = re.compile(r"\buse\s+crate::\{([^;]*)\};", re.S)


def modules():
    mods = {}
    for name in sorted(os.listdir(ROOT)):
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            files = []
            for d, _, fs in os.walk(path):
                files += [os.path.join(d, f) for f in fs if f.endswith(".rs")]
            mods[name] = files
        elif name.endswith(".rs"):
            mods[name[:-3]] = [path]
    return {m: fs for m, fs in mods.items() if m not in SKIP}


def strip_comments(text):
    # Line comments only: doc links in `//!`/`///` are not imports.
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def edges(mods):
    graph = {m: set() for m in mods}
    for m, files in mods.items():
        for f in files:
            with open(f, encoding="utf-8") as fh:
                text = strip_comments(fh.read())
            names = set(CRATE_PATH.findall(text))
            for group in USE_GROUP.findall(text):
                names |= {re.split(r"\W", part.strip(), maxsplit=1)[0]
                          for part in group.split(",") if part.strip()}
            for n in names:
                if n in mods and n != m:
                    graph[m].add(n)
    return graph


def find_cycle(graph):
    state = {}
    stack = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def main():
    graph = edges(modules())
    if "--print" in sys.argv:
        for m in sorted(graph):
            print(f"{m} -> {', '.join(sorted(graph[m])) or '-'}")
    cycle = find_cycle(graph)
    if cycle:
        print("module-dag: import cycle: " + " -> ".join(cycle), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
