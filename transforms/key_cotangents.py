"""The cotangent of a dict read by constant keys, one variable per key.

A network's parameters come as ``params = {"W1": ..., "b1": ..., ...}`` and are read as
``params["W1"]``. Each read's adjoint is a whole dict, ``unindex(dt1, params, "W1")``:
``dt1`` at "W1" and a zero view at every other key, added up leaf by leaf by
``accumulate`` and completed by ``zeros_if_none``. For a four-key dict that is seven
helper calls and a dozen dicts per gradient, where a hand-written backpropagation keeps
one variable per weight. This pass writes what the hand-written code does:

    dparams_b2 = unbroadcast(dlogits, t7)
    ...
    dparams_W1 = matmul_adjoint_rhs(dt2, x, t1)
    dparams = zeros_if_none({"b2": dparams_b2, ..., "W1": dparams_W1}, params)

It applies where a cotangent ``d`` is made only of such reads, at the top level of the
function: ``d = unindex(c, p, "k")`` first, then ``d = accumulate(d, unindex(c, p, "k"))``,
and last ``d = zeros_if_none(d, p)``, with nothing else reading ``d`` before the end.
``zeros_if_none`` gives the dict ``p``'s keys in ``p``'s order, zeros where nothing
reached, as before. Reads inside loops and branches keep the general form.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from s2sgrad.transforms import dataflow
from s2sgrad.transforms.names import FreshNames
from s2sgrad.transforms.prims import ACCUMULATE, runtime_helper

from s2sgrad import ir


def split_key_cotangents(fn: ir.FunctionDef, names: FreshNames) -> ir.FunctionDef:
    """``fn`` with each cotangent made only of constant-key reads kept one name per key."""
    for d in _candidates(fn):
        fn = _split(fn, d, names)
    return fn


def _key_read(value: Any) -> tuple[Any, str, str] | None:
    """``(c, p, k)`` for ``unindex(c, p, "k")`` of a name ``p`` and a string ``k``."""
    if not (
        runtime_helper(value) == "unindex"
        and len(value.args) == 3
        and not value.kwargs
        and isinstance(value.args[1], ir.Name)
    ):
        return None
    key = value.args[2]
    if isinstance(key, ir.Index) and len(key.items) == 1:
        key = key.items[0]
    if isinstance(key, ir.Const) and type(key.value) is str:
        return value.args[0], value.args[1].id, key.value
    return None


def _candidates(fn: ir.FunctionDef) -> list[str]:
    """Names completed by a top-level ``d = zeros_if_none(d, p)``."""
    return [
        s.target.id
        for s in fn.body
        if isinstance(s, ir.Assign)
        and len(s.targets) == 1
        and runtime_helper(s.value) == "zeros_if_none"
        and s.value.args[:1] == (s.target,)
    ]


def _split(fn: ir.FunctionDef, d: str, names: FreshNames) -> ir.FunctionDef:
    body = fn.body
    inner = tuple(s for st in body for b in ir.child_blocks(st) for s in b)
    if d in dataflow.deep_reads(inner) | dataflow.deep_writes(inner):
        return fn
    reads: dict[str, int] = {}
    for s in ir.walk_stmts(body):
        for n in dataflow.reads(s):
            reads[n] = reads.get(n, 0) + 1
    reads_of_temp = {}  # temp read once -> (position, its unindex read)
    plan: dict[int, Any] = {}  # position -> ("part", c, k), ("drop",) or ("end",)
    param: str | None = None
    state = "unset"  # -> "none" (d = None) -> "parts" -> "ended"
    for i, s in enumerate(body):
        if state == "ended":
            if d in dataflow.writes(s):
                return fn
            continue
        if isinstance(s, ir.Assign) and len(s.targets) == 1:
            read = _key_read(s.value)
            if read is not None and reads.get(s.target.id) == 1 and s.target.id != d:
                reads_of_temp[s.target.id] = (i, read)
        if d not in dataflow.writes(s) and d not in dataflow.reads(s):
            continue
        if not (isinstance(s, ir.Assign) and len(s.targets) == 1 and s.target.id == d):
            return fn  # read or written some other way
        value = s.value
        part = None
        if value == ir.Const(None) and state == "unset":
            plan[i] = ("drop",)  # (the None a cotangent that may stay unset starts as)
            state = "none"
            continue
        if _key_read(value) is not None and state != "parts":
            part = (i, _key_read(value))
        elif isinstance(value, ir.Name) and value.id in reads_of_temp and state != "parts":
            part = reads_of_temp[value.id]  # `d = t` of `t = unindex(...)`
        elif (
            runtime_helper(value) == "accumulate"
            and state != "unset"
            and value.args[0] == ir.Name(d)
            and isinstance(value.args[1], ir.Name)
            and value.args[1].id in reads_of_temp
        ):
            part = reads_of_temp[value.args[1].id]
        elif (
            runtime_helper(value) == "zeros_if_none"
            and state == "parts"
            and value.args[0] == ir.Name(d)
            and isinstance(value.args[1], ir.Name)
            and value.args[1].id == param
        ):
            plan[i] = ("end",)
            state = "ended"
            continue
        else:
            return fn
        j, (c, p, k) = part
        if param is not None and p != param:
            return fn
        param = p
        plan[j] = ("part", c, k)  # where the read's cotangent was taken
        if j != i:
            plan[i] = ("drop",)
        state = "parts"
    if state != "ended" or param is None or param in dataflow.deep_writes(body):
        return fn
    return replace(fn, body=_rewritten(body, plan, d, param, names))


def _rewritten(body, plan: dict[int, Any], d: str, param: str, names: FreshNames) -> tuple:
    per_key: dict[str, ir.Name] = {}
    out: list[ir.Stmt] = []
    for i, s in enumerate(body):
        step = plan.get(i)
        if step is None:
            out.append(s)
        elif step[0] == "part":
            _, c, k = step
            if k in per_key:
                value: Any = ir.Call(ACCUMULATE, (per_key[k], c))
            else:
                per_key[k] = ir.Name(names.fresh(f"{d}_{k}" if k.isidentifier() else d))
                value = c
            out.append(ir.Assign((per_key[k],), value, s.loc))
        elif step[0] == "end":
            parts = ir.Seq("dict", tuple(per_key.values()), tuple(ir.Const(k) for k in per_key))
            out.append(replace(s, value=replace(s.value, args=(parts, ir.Name(param)))))
        # ("drop",): a step of the whole-dict cotangent, now in the per-key names
    return tuple(out)
