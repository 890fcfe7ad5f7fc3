#!/usr/bin/env python3
"""Print the top-level module graph of the gtio crate (who `use`s whom, from
`crate::x` paths in src/) and any cycles in it; exit 1 if there is a cycle.

Usage: scripts/module-graph.py [--dot]
Test modules (#[cfg(test)] files named tests.rs) are left out: a test may
reach across modules without making the library's data flow circular.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
PATH = re.compile(r"\bcrate::([A-Za-z_][A-Za-z0-9_]*)")
# lib.rs re-exports: `crate::Error` is a use of `error`
REEXPORTS = {"Error": "error", "Result": "error", "Config": "config",
             "Dataset": "handle", "Reader": "handle", "Whence": "handle"}
# `use crate::{a, b::c}` groups
GROUP = re.compile(r"\bcrate::\{([^}]*)\}", re.S)


def top_module(rel):
    parts = rel.split(os.sep)
    if len(parts) == 1:
        name = parts[0][:-3]
        return None if name == "lib" else name
    return parts[0]


def edges():
    graph = {}
    for d, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs") or f == "tests.rs":
                continue
            path = os.path.join(d, f)
            mod = top_module(os.path.relpath(path, ROOT))
            if mod is None:
                continue
            text = open(path, encoding="utf-8").read()
            # drop line comments so doc links do not count as imports
            text = re.sub(r"//[^\n]*", "", text)
            targets = set(PATH.findall(text))
            for g in GROUP.findall(text):
                targets.update(re.findall(r"(?:^|,)\s*([A-Za-z_][A-Za-z0-9_]*)", g))
            targets = {REEXPORTS.get(t, t) for t in targets}
            graph.setdefault(mod, set()).update(t for t in targets if t != mod)
    return graph


def cycles(graph):
    found, state = [], {}

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    return found


def main():
    graph = edges()
    if "--dot" in sys.argv:
        print("digraph gtio {")
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f"  {a} -> {b};")
        print("}")
    else:
        for a in sorted(graph):
            print(f"{a:12} -> {', '.join(sorted(graph[a])) or '(nothing)'}")
    found = cycles(graph)
    for c in found:
        print("cycle: " + " -> ".join(c), file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
