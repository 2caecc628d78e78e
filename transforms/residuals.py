"""A called function's vjp split in two: a forward pass that also returns its residuals,
and a backward pass that starts from them.

Differentiated by recomputation, a call ``y = G(a, b)`` in reverse mode runs G's
forward work once in the caller's forward sweep and again in ``G_vjp`` (and once more
per nesting level below it: a callee of G reruns its forward part in G's forward
sweep, in G_vjp's and in its own vjp). Split, the caller's forward sweep calls

    y, G_residuals = G_fwd(a, b)   # G's value, and what G's backward sweep reads

and its backward sweep ``G_bwd(G_residuals, dy)``: each forward part runs once, and the
residuals are ordinary values of the caller, saved per iteration by the caller's own
machinery when the call is in a loop. The residuals are the names the backward sweep
of ``G_vjp`` reads that its forward sweep (or the caller) gives it: intermediate values
and the parameters it reads.

A callee with loops is split too: its stacks are residuals like any other value, and
its JAX tapes nest in the caller's. Only a module read back to be differentiated again
(higher order) keeps such a callee whole, since the frontend reads a stack only where it
is made. Which calls split is the backend's choice (``Backend.splits_callee``): NumPy
splits every one; under XLA the recomputed forward work outside loops is merged with
the forward sweep's, so the JAX backend splits only where the residuals are saved per
iteration of a loop, where recomputing would rerun the callee in every backward step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from s2sgrad.transforms import dataflow
from s2sgrad.transforms.names import FreshNames
from s2sgrad.transforms.prims import GETITEM
from s2sgrad.transforms.templates import any_template, bind_call

from s2sgrad import ir, runtime
from s2sgrad.rules import lookup

STAND_IN = ir.Ref("stand_in", runtime.stand_in)

#: The comment that starts the backward sweep of a generated adjoint function (what
#: follows it only reads saves and accumulates adjoints: see backends.jax).
BACKWARD_SWEEP = "backward sweep"


def sweep_start(body: Sequence[ir.Stmt]) -> int:
    """The position of the comment that starts the backward sweep in a generated adjoint
    function's top-level ``body`` (``len(body)`` where there is none)."""
    return next(
        (i for i, s in enumerate(body) if isinstance(s, ir.Comment) and s.text == BACKWARD_SWEEP),
        len(body),
    )


def has_loops(fn: ir.FunctionDef) -> bool:
    return any(ir.is_loop(s) for s in ir.walk_stmts(fn.body))


def split_vjp(
    vjp: ir.FunctionDef, fwd_name: str, bwd_name: str
) -> tuple[ir.FunctionDef, ir.FunctionDef]:
    """``G_vjp(*params, dout) -> (out, grads)`` as ``G_fwd(*params) -> (out, residuals)``
    and ``G_bwd(residuals, dout) -> grads``, the residuals a tuple."""
    *body, ret = vjp.body
    cut = sweep_start(body)
    forward, backward = body[:cut], body[cut + 1 :]
    out, grads = ret.value.elts
    seed = vjp.params[-1].name
    read = dataflow.live_in((*backward, ir.Return(grads, ret.loc)), set(), slots=True)
    # Names read but never assigned are module globals (bound at load time): not residuals.
    order = list(vjp.param_names) + [
        n for s in ir.walk_stmts(tuple(forward)) for n in dataflow.writes(s, slots=True)
    ]
    residuals = tuple(dict.fromkeys(n for n in order if n in read and n != seed))
    # A residual that only some paths assign (inside an `if`) is read back only on those
    # paths, but returned on all: None where it was never set.
    everywhere = set(vjp.param_names) | {
        n for s in forward if not ir.is_compound(s) for n in dataflow.writes(s, slots=True)
    }
    unset = [
        ir.Assign((ir.Name(n),), ir.Const(None), vjp.loc) for n in residuals if n not in everywhere
    ]
    names = tuple(ir.Name(n) for n in residuals)
    shaped = read_for_shape_only((*backward, ir.Return(grads, ret.loc)))
    shaped -= {  # (another name for, or a view of, a value something else holds)
        t.id for s in forward if isinstance(s, ir.Assign) and not new_array(s) for t in s.targets
    }
    returned = tuple(ir.Call(STAND_IN, (n,)) if n.id in shaped else n for n in names)
    packed = ir.Name(FreshNames(set(order) | read | {seed}).fresh("residuals"))
    if len(names) == 1:
        unpack = [ir.Assign(names, ir.Call(GETITEM, (packed, ir.Index((ir.Const(0),)))), vjp.loc)]
    else:
        unpack = [ir.Assign(names, packed, vjp.loc)] if names else []
    fwd = replace(
        vjp,
        name=fwd_name,
        params=vjp.params[:-1],
        body=(
            *unset,
            *forward,
            ir.Return(ir.Seq("tuple", (out, ir.Seq("tuple", returned))), ret.loc),
        ),
    )
    bwd = replace(
        vjp,
        name=bwd_name,
        params=(ir.Param(packed.id), vjp.params[-1]),
        body=(
            *unpack,
            ir.Comment(BACKWARD_SWEEP),
            *backward,
            ir.Return(grads, ret.loc),
        ),
    )
    return fwd, bwd


def read_for_shape_only(body: tuple[ir.Stmt, ...]) -> set[str]:
    """Names ``body`` reads, every time, as an argument of which the callee reads only the
    shape and dtype (``unbroadcast(g, x)``'s ``x``: ``registry.shape_only``)."""
    return set(shape_reads(body)) - value_reads(body)


def value_reads(body: tuple[ir.Stmt, ...]) -> set[str]:
    """Names ``body`` reads, or writes, other than for their shape and dtype alone."""
    reads = Counter(n for s in ir.walk_stmts(body) for n in dataflow.reads(s))
    reads.subtract(shape_reads(body))
    return {n for n, k in reads.items() if k > 0} | dataflow.deep_writes(body)


def shape_reads(body: tuple[ir.Stmt, ...]) -> Counter:
    """How many times ``body`` passes each name as a shape-only argument."""
    shaped: Counter = Counter()
    for stmt in ir.walk_stmts(body):
        if isinstance(stmt, (ir.Assign, ir.Unpack, ir.Return)):
            _count_shape_args(stmt.value, shaped)
    return shaped


def _count_shape_args(expr: object, shaped: Counter) -> None:
    """Count, into ``shaped``, the names passed directly as shape-only arguments in ``expr``."""
    if isinstance(expr, ir.Call):
        rule = lookup(expr.fn.value) if isinstance(expr.fn, ir.Ref) else None
        if rule is not None and rule.shape_params:
            bound = bind_call(any_template(rule), expr, None, rule)
            for param in rule.shape_params:
                if isinstance(bound.get(param), ir.Name):
                    shaped[bound[param].id] += 1
        for arg in (*expr.args, *(v for _, v in expr.kwargs)):
            _count_shape_args(arg, shaped)
    elif isinstance(expr, ir.Seq):
        for e in (*(expr.keys or ()), *expr.elts):
            _count_shape_args(e, shaped)
    elif isinstance(expr, (ir.IfExp, ir.BoolOp, ir.MethodCall, ir.Attribute, ir.Index)):
        for child in vars(expr).values():
            if isinstance(child, tuple):
                for c in child:
                    _count_shape_args(c, shaped)
            else:
                _count_shape_args(child, shaped)


def new_array(stmt: ir.Stmt) -> bool:
    """Whether ``stmt`` may make an array nothing else holds, whose memory a stand-in frees:
    not another name for a value (``x_saved = x``, a residual unpacked from the backward
    function's parameter), nor an item or a slice at constant positions (``params["W1"]``,
    ``cams[:, 3:6]``: the container or the array it views holds the memory)."""
    if not isinstance(stmt, ir.Assign) or isinstance(stmt.value, ir.Name):
        return False
    if isinstance(stmt.value, ir.Call) and stmt.value.fn == GETITEM:
        return bool(ir.atom_names(stmt.value.args[1]))  # an index array or mask: new
    return True
