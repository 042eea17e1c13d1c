#!/usr/bin/python3
"""Reads the #include lines of userspace/ and fails on any include that goes
up the layers (README, "Source tree"): each folder may include only itself
and the folders below it. BPF headers (bpf/*.h, *.skel.h) belong to the
loader and to the stack table's ring-record decoding; the model is pure (no
BPF header, no JSON library).

Usage: check_layers.py SOURCE_DIR [--graph]   (--graph prints folder edges)
"""
import os
import re
import sys

# What each layer may include besides itself.
ALLOWED = {
    "model": set(),
    "output": {"model"},
    "system": {"model"},
    "symbols": {"model", "system", "bpf"},
    "loader": {"model", "system", "symbols", "bpf"},
    "app": {"model", "output", "system", "symbols", "loader", "bpf"},
}
# Third-party headers a layer must not use (the model is format-free).
FORBIDDEN_SYSTEM = {"model": ("nlohmann/",)}
# Back edges not yet removed, as (file, included header). The check fails
# when one of these is gone too, so the list only shrinks.
KNOWN = set()

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def main():
    root = sys.argv[1]
    us = os.path.join(root, "userspace")
    owner = {}  # bare header name -> layer
    for layer in ALLOWED:
        for name in os.listdir(os.path.join(us, layer)):
            if name in owner:
                sys.exit("check_layers: %s is in both %s/ and %s/" % (name, owner[name], layer))
            owner[name] = layer
    for name in os.listdir(os.path.join(root, "bpf")):
        if name.endswith(".h"):
            owner[name] = "bpf"
    bad, seen, graph = [], set(), set()
    for layer in ALLOWED:
        for name in sorted(os.listdir(os.path.join(us, layer))):
            rel = "%s/%s" % (layer, name)
            with open(os.path.join(us, layer, name)) as f:
                for line in f:
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    kind, inc = m.groups()
                    if kind == "<":
                        if any(inc.startswith(p) for p in FORBIDDEN_SYSTEM.get(layer, ())):
                            target = "<" + inc + ">"
                        else:
                            continue
                    else:
                        base = os.path.basename(inc)
                        to = "bpf" if base.endswith(".skel.h") else owner.get(base)
                        if to is None:
                            bad.append("%s includes \"%s\", found in no layer" % (rel, inc))
                            continue
                        if to != layer:
                            graph.add((layer, to))
                        if to == layer or to in ALLOWED[layer]:
                            continue
                        target = inc
                    if (rel, target) in KNOWN:
                        seen.add((rel, target))
                        continue
                    bad.append("%s includes %s: %s/ may include only %s" % (
                        rel, target, layer, ", ".join(sorted(ALLOWED[layer])) or "itself"))
    for gone in sorted(KNOWN - seen):
        bad.append("%s no longer includes %s: drop it from KNOWN" % gone)
    if "--graph" in sys.argv:
        for a, b in sorted(graph):
            print("%s -> %s" % (a, b))
    for line in bad:
        print("check_layers: " + line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
