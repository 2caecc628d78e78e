"""Loop-invariant code motion for compiler temporaries.

``k2 = f(y + 0.5 * dt * k1)`` in an integrator loop computes ``0.5 * dt``
every step, and reverse mode would then record it every step too. A
temporary whose operands the loop never writes has the same value in every
iteration: compute it once, before the loop. Only compiler temporaries move
(they are read nowhere outside their loop), so the user's own variables and
what a zero-trip loop leaves behind are unchanged.
"""

from __future__ import annotations

from dataclasses import replace

from s2sgrad.transforms import dataflow

from s2sgrad import ir


def hoist_invariants(fn: ir.FunctionDef) -> ir.FunctionDef:
    return replace(fn, body=_block(fn.body, fn.temps))


def _block(body: tuple[ir.Stmt, ...], temps: frozenset[str]) -> tuple[ir.Stmt, ...]:
    out: list[ir.Stmt] = []
    for stmt in body:
        stmt = ir.map_blocks(stmt, lambda block: _block(block, temps))
        if ir.is_loop(stmt):
            hoisted, stmt = _hoist_from(stmt, temps)
            # Keep the loop's `r = range(...)` right before it (structure's promise).
            header = (
                [out.pop()]
                if isinstance(stmt, ir.For)
                and out
                and isinstance(out[-1], ir.Assign)
                and out[-1].targets == (stmt.iter,)
                else []
            )
            out += hoisted + header
        out.append(stmt)
    return tuple(out)


def _hoist_from(loop, temps: frozenset[str]):
    written = dataflow.deep_writes((loop,))
    hoisted: list[ir.Stmt] = []
    kept: list[ir.Stmt] = []
    for stmt in loop.body:
        if (
            isinstance(stmt, ir.Assign)
            and len(stmt.targets) == 1
            and stmt.target.id in temps
            and not (set(ir.atom_names(stmt.value)) & written)
        ):
            hoisted.append(stmt)
            written.discard(stmt.target.id)  # now defined before the loop, once
        else:
            kept.append(stmt)
    return hoisted, replace(loop, body=tuple(kept))
