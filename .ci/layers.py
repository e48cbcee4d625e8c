#!/usr/bin/env python3
"""Fails when the rooms of src/ (top-level modules) import each other in a cycle.

A room imports only rooms below it. Test modules (`#[cfg(test)] mod tests { ... }` and
files named tests.rs) are left out: a unit test may load the whole site. Prints the
cycles found, or the order of the rooms from the bottom up.
"""
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(__file__), "..", "src")


def strip_tests(src: str) -> str:
    i = src.find("#[cfg(test)]")
    return src if i < 0 else src[:i]


rooms = sorted(
    (n[:-3] if n.endswith(".rs") else n)
    for n in os.listdir(ROOT)
    if n not in ("main.rs", "lib.rs")
)
deps = defaultdict(set)
for room in rooms:
    files = []
    if os.path.isdir(os.path.join(ROOT, room)):
        for d, _, fs in os.walk(os.path.join(ROOT, room)):
            files += [os.path.join(d, f) for f in fs if f.endswith(".rs") and f != "tests.rs"]
    if os.path.exists(os.path.join(ROOT, room + ".rs")):
        files.append(os.path.join(ROOT, room + ".rs"))
    for f in files:
        for m in re.findall(r"crate::([a-z_]+)", strip_tests(open(f).read())):
            if m != room and m in rooms:
                deps[room].add(m)

order, state, cycles = [], {}, []


def visit(n, path):
    state[n] = 1
    for m in sorted(deps[n]):
        if state.get(m) == 1:
            cycles.append(path[path.index(m):] + [m])
        elif m not in state:
            visit(m, path + [m])
    state[n] = 2
    order.append(n)


for r in rooms:
    if r not in state:
        visit(r, [r])
if cycles:
    for c in cycles:
        print("cycle: " + " -> ".join(c))
    sys.exit(1)
print("rooms, bottom up: " + ", ".join(order))
