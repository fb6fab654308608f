#!/usr/bin/env python3
"""The module import graph of src/ (one node per file) and its circles.

An edge A -> B when A names B in a path (`use crate::b`, `super::b::x`, `b::f()` from a parent
to its child, `super::X` from a child to its parent's items). Prints every strongly connected
component of more than one module (an import circle) and exits 1 if there is one.
Usage: scripts/import-graph.py [SRC_DIR] [-v]   (-v: the edges inside each circle)"""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else "src"
mods = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith(".rs"):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)[:-3].split(os.sep)
            if rel[-1] == "mod": rel = rel[:-1]
            if rel == ["lib"]: rel = []
            mods["::".join(rel)] = p
def resolve(cur, path):
    parts = path.split("::")
    if parts[0] == "crate": base = []; parts = parts[1:]
    elif parts[0] == "super":
        base = cur.split("::")[:-1] if cur else []
        parts = parts[1:]
        while parts and parts[0] == "super": base = base[:-1]; parts = parts[1:]
    elif parts[0] == "self":
        base = cur.split("::") if cur else []; parts = parts[1:]
    else: return None
    best = None
    for i in range(len(parts)+1):
        cand = "::".join(base + parts[:i])
        if cand in mods: best = cand
    return best
edges = {m: set() for m in mods}
pat = re.compile(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")
for m, p in mods.items():
    src = open(p).read()
    # drop #[cfg(test)] mod tests blocks crudely: cut at '#[cfg(test)]\nmod tests'
    i = src.find("#[cfg(test)]\nmod tests")
    if i >= 0: src = src[:i]
    # also handle use super::{a, b::c}
    for u in re.finditer(r"use\s+((?:crate|super|self)(?:::\w+)*)::\{([^}]*)\}", src):
        for item in u.group(2).split(","):
            item = item.strip().split(" as ")[0].split("::{")[0]
            if not item: continue
            t = resolve(m, u.group(1) + "::" + item) if item != "self" else resolve(m, u.group(1))
            if t is not None and t != m: edges[m].add(t)
    for ch in [k for k in mods if k.startswith(m + "::" if m else "") and k.count("::") == (m.count("::")+1 if m else 0) and k]:
        name = ch.split("::")[-1]
        if re.search(r"(?<![:\w])" + name + r"::", src): edges[m].add(ch)
    for u in pat.finditer(src):
        t = resolve(m, u.group(1))
        if t is not None and t != m: edges[m].add(t)
# parent->child edges via `mod x;` are structure, not imports: ignore
# Tarjan
idx = {}; low = {}; st = []; on = set(); out = []; c = [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: out.append(sorted(comp))
for v in mods:
    if v not in idx: sc(v)
for comp in out: print("circle:", " ".join(x or "crate" for x in comp))
print(len(out), "import circles")
if "-v" in sys.argv:
    for comp in out:
        cs = set(comp)
        print("--", len(comp))
        for v in comp:
            print("  ", v or "crate", "->", ", ".join(sorted(w for w in edges[v] if w in cs)))
sys.exit(1 if out else 0)
