#!/usr/bin/env python3
"""Writes the starting program.json: the tree-traversal problem done one walker at a time,
with scalar ALU operations, one slot per bundle.

This is a starting point to edit, not a requirement: any tool in any language may write
program.json. Run it as `python3 build_program.py > program.json`. It reads the problem's
parameters from params.json in this folder.
"""

import json
import os
import sys

SCRATCH_SIZE = 1536
COMBINE = {"+": "+", "^": "^"}
SHIFT = {"<<": "<<", ">>": ">>"}


class Builder:
    def __init__(self):
        self.next_free = 0
        self.slots = []  # (engine, [op, args...]) in program order
        self.constants = {}

    def alloc(self):
        at = self.next_free
        self.next_free += 1
        if self.next_free > SCRATCH_SIZE:
            sys.exit("out of scratch")
        return at

    def emit(self, engine, *slot):
        self.slots.append((engine, list(slot)))

    def constant(self, value):
        """The scratch word holding `value`, loaded on first use."""
        if value not in self.constants:
            at = self.alloc()
            self.emit("load", "const", at, value)
            self.constants[value] = at
        return self.constants[value]


def build(params):
    b = Builder()
    tmp1, tmp2, tmp3 = b.alloc(), b.alloc(), b.alloc()
    # The memory header: rounds, n_nodes, batch, height, tree_ptr, indices_ptr, values_ptr.
    header = [b.alloc() for _ in range(7)]
    for i, var in enumerate(header):
        b.emit("load", "const", tmp1, i)
        b.emit("load", "load", var, tmp1)
    n_nodes, tree_ptr, indices_ptr, values_ptr = header[1], header[4], header[5], header[6]
    zero, one, two = b.constant(0), b.constant(1), b.constant(2)
    b.emit("flow", "pause")  # no effect when scoring
    idx, val, node, addr = b.alloc(), b.alloc(), b.alloc(), b.alloc()
    body = []

    def alu(op, dest, x, y):
        body.append(("alu", [op, dest, x, y]))

    for _round in range(params["rounds"]):
        for i in range(params["batch"]):
            ic = b.constant(i)
            alu("+", addr, indices_ptr, ic)
            body.append(("load", ["load", idx, addr]))
            alu("+", addr, values_ptr, ic)
            body.append(("load", ["load", val, addr]))
            alu("+", addr, tree_ptr, idx)
            body.append(("load", ["load", node, addr]))
            alu("^", val, val, node)
            for stage in params["stages"]:
                c = b.constant(stage["constant"])
                k = b.constant(stage["shift"])
                alu(COMBINE[stage["op1"]], tmp1, val, c)
                alu(SHIFT[stage["op3"]], tmp2, val, k)
                alu(COMBINE[stage["op2"]], val, tmp1, tmp2)
            # idx = 2 * idx + (1 if val is even else 2), then back to the root past the leaves
            alu("%", tmp1, val, two)
            alu("==", tmp1, tmp1, zero)
            body.append(("flow", ["select", tmp3, tmp1, one, two]))
            alu("*", idx, idx, two)
            alu("+", idx, idx, tmp3)
            alu("<", tmp1, idx, n_nodes)
            body.append(("flow", ["select", idx, tmp1, idx, zero]))
            alu("+", addr, indices_ptr, ic)
            body.append(("store", ["store", addr, idx]))
            alu("+", addr, values_ptr, ic)
            body.append(("store", ["store", addr, val]))
    b.slots.extend(body)
    b.emit("flow", "pause")
    return [{engine: [slot]} for engine, slot in b.slots]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "params.json")) as f:
        params = json.load(f)
    bundles = build(params)
    out = sys.stdout
    out.write('{"format": "rdbench-vliw/1", "bundles": [\n')
    out.write(",\n".join(json.dumps(b, separators=(", ", ": ")) for b in bundles))
    out.write("\n]}\n")


if __name__ == "__main__":
    main()
