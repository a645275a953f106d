#!/usr/bin/env python3
"""Fails when modules of one crate import each other in a circle.

For every crate under crates/, each source file is a module (`src/a/b.rs` and `src/a/b/mod.rs`
are `a::b`). A reference `crate::a::b::Item` or `super::x` inside module M is an edge from M to
the module it names. Edges are compared between siblings: two top-level modules of a crate, or two
children of one directory module (a child using its parent's items, or the parent re-exporting a
child, is not a circle: that is how a module presents its parts). Any strongly connected group of
two or more siblings is printed, with one reference for each edge, and the exit code is 1.

Usage: scripts/check-module-cycles.py [CRATES_DIR]   (default: crates)
"""
import os
import re
import sys
from collections import defaultdict

REF = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\}", re.S)
COMMENT = re.compile(r"//[^\n]*")


def modules(src):
    """Maps module path tuples to files."""
    out = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            if parts and parts[0] == "bin":
                continue
            out[tuple(parts)] = os.path.join(root, f)
    return out


def resolve(mods, here, kind, path):
    """The module a reference names: the longest known module prefix of its path."""
    segs = [s for s in path.split("::") if s]
    if kind == "crate":
        base = []
    else:
        base = list(here[:-1])
        while segs and segs[0] == "super":
            base = base[:-1]
            segs = segs[1:]
    full = base + segs
    for n in range(len(full), -1, -1):
        if tuple(full[:n]) in mods:
            return tuple(full[:n])
    return ()


def sibling_edge(a, b):
    """The pair of siblings an edge a -> b runs between, if any."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    if n == len(a) or n == len(b):
        return None  # one contains the other: parent and child
    return a[: n + 1], b[: n + 1]


def refs(text):
    text = COMMENT.sub("", text)
    for m in USE_GROUP.finditer(text):
        for item in re.split(r",", m.group(3)):
            item = item.strip().split(" as ")[0].strip()
            if item and item != "self" and not item.startswith("{"):
                yield m.group(1), m.group(2) + "::" + item.split("::")[0]
            else:
                yield m.group(1), m.group(2)
    for m in REF.finditer(text):
        yield m.group(1), m.group(2)


def cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            strong(v)
    return out


def main():
    crates = sys.argv[1] if len(sys.argv) > 1 else "crates"
    failed = False
    checked = 0
    for crate in sorted(os.listdir(crates)):
        src = os.path.join(crates, crate, "src")
        if not os.path.isdir(src):
            continue
        mods = modules(src)
        graph = defaultdict(set)
        why = {}
        for here, path in mods.items():
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for kind, p in refs(text):
                there = resolve(mods, here, kind, p)
                pair = sibling_edge(here, there) if there else None
                if pair and pair[0] != pair[1]:
                    graph[pair[0]].add(pair[1])
                    why.setdefault(pair, f"{os.path.relpath(path)}: {kind}{p}")
        checked += len(mods)
        for group in cycles(graph):
            failed = True
            names = ", ".join("::".join(g) for g in group)
            print(f"{crate}: modules import each other in a circle: {names}")
            for a in group:
                for b in sorted(graph[a]):
                    if b in group:
                        print(f"    {'::'.join(a)} -> {'::'.join(b)}  ({why[(a, b)]})")
    if failed:
        return 1
    print(f"module cycles: none ({checked} modules checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
