"""Checkpointed loops: which loops keep only a few states, and the code their schedule runs.

A loop marked ``# s2sgrad: checkpoint(snapshots=N)`` (or every loop that saves values,
with ``grad(..., checkpoint=N)``) is reversed with the binomial schedule of
``s2sgrad.runtime.revolve`` instead of saving what each iteration computes. It is a
rerun loop (``transforms.remat``) whose state is not saved before every iteration but
only where the schedule says so; ``transforms.reverse`` generates both:

    # forward sweep: the loop as written, the schedule keeping states
    state_checkpoints = checkpoints(20, loop_range, (state,))
    for t in loop_range:
        state_checkpoints = store_checkpoint(state_checkpoints, (state,))
        state = step(state, t)
    ...
    # backward sweep, per iteration: the latest kept state, rerun up to this iteration
    for t in reversed(loop_range):
        (state,), start, stop, state_checkpoints = restore_checkpoint(state_checkpoints)
        for t in loop_range[start:stop]:
            state_checkpoints = store_checkpoint(state_checkpoints, (state,))
            state = step(state, t)
        t = loop_range[stop]
        <the iteration again, keeping what its backward sweep reads; its backward sweep>

The loops it takes are those a rerun can replay: counted ``for`` loops over a ``range``,
and on NumPy ``while`` loops and loops that ``break`` (their trip count is known at their
end: the schedule is decided online, ``runtime.revolve``), whose body is assignments,
branches and in-place updates (calls of user functions included: what they do inside is
theirs). A state updated in place is kept as copies; the part an update overwrites is
kept as ``<name>_part_before`` in the rerun of an iteration. A while loop's backward iteration reruns its test block too (and
``for _ in range(start, stop)`` for the advance: the test held on those iterations).
Anything else marked for checkpointing is an error that names the statement in the
way, never a loop silently reversed another way.
"""

from __future__ import annotations

from s2sgrad.transforms import dataflow
from s2sgrad.transforms.prims import GETITEM, RANGE

from s2sgrad import ir, runtime
from s2sgrad.errors import UnsupportedSyntaxError

CHECKPOINTS = ir.Ref("checkpoints", runtime.checkpoints)
STORE = ir.Ref("store_checkpoint", runtime.store_checkpoint)
RESTORE = ir.Ref("restore_checkpoint", runtime.restore_checkpoint)

# What a rerun cannot replay yet. (``break``, ``continue`` and ``return`` are flags by now:
# ``transforms.structure``; a loop's own ``if broke: break`` is left out of its rerun.)
_KINDS = {
    ir.For: "a nested loop",
    ir.While: "a nested loop",
}


def snapshots_for(loop: ir.Stmt, default: int | None, saves: bool) -> int | None:
    """The snapshots ``loop`` is checkpointed with: its directive's, else ``default``
    (``grad(..., checkpoint=N)``) where its body saves values; None: not checkpointed."""
    if ir.is_loop(loop) and loop.checkpoint is not None:
        return loop.checkpoint
    return default if saves else None


def require_checkpointable(
    loop: ir.For | ir.While,
    body: tuple[ir.Stmt, ...],
    ranges: set[str],
    compilation,
    online: bool,
) -> None:
    """Raise, naming the statement in the way, unless ``loop`` is one a checkpointed
    reverse sweep can rerun: a loop over a range or a while loop, whose iteration
    ``body`` (a while loop's test block and body, without the loop's own ``if broke:
    break``) has no loop inside. ``online``: its trip count is known only at its
    end (a while loop, a loop that breaks), which not every backend can schedule."""
    where = f"the loop at line {loop.loc.line}" if loop.loc else "this loop"
    target = getattr(compilation, "target", None)
    if online and target is not None and not target.checkpoints_online:
        kind = "a while loop" if isinstance(loop, ir.While) else "a loop that may break"
        raise UnsupportedSyntaxError(
            f"checkpointing {where}: {kind} (its trip count known only at its end) is not "
            f"checkpointed on the {target.name} backend yet",
            loop.loc,
            "loop over range(n) for a trip count known when it starts, or use " "backend='numpy'",
        )
    if isinstance(loop, ir.For) and not (
        isinstance(loop.target, ir.Name) and _over_range(loop.iter, ranges)
    ):
        raise UnsupportedSyntaxError(
            f"checkpointing {where}: only loops over a range(...) are checkpointed",
            loop.loc,
            "loop over range(len(...)) and index, or drop the checkpoint directive",
        )
    for stmt in ir.walk_stmts(body):
        kind = _KINDS.get(type(stmt))
        if kind is not None:
            raise UnsupportedSyntaxError(
                f"checkpointing {where}: its body has {kind}; this version checkpoints "
                "loops without loops inside",
                stmt.loc or loop.loc,
                "move the inner loop into a function the loop body calls (a called "
                "function may loop), checkpoint the inner loop alone, or drop the directive",
            )


def is_loop_exit(stmt: ir.Stmt) -> bool:
    """Whether ``stmt`` is a loop's own ``if broke: break`` (``transforms.structure``: a
    structured loop's only jump, at the end of its body)."""
    return (
        isinstance(stmt, ir.If)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], ir.Break)
        and not stmt.orelse
    )


def _over_range(it: ir.Expr, ranges: set[str]) -> bool:
    return ir.is_call_of(it, range) or isinstance(it, ir.Name) and it.id in ranges


def state_tuple(carried: tuple[str, ...]) -> ir.Seq:
    return ir.Seq("tuple", tuple(ir.Name(n) for n in carried))


def create(
    checkpoints: ir.Name, snapshots: int, loop, carried, online: bool, body
) -> list[ir.Stmt]:
    """``c = checkpoints(N, loop_range, (state,))`` before the loop; ``None`` for the range
    where the trip count is known only at the end (``online``). A state the ``body``
    updates in place (``x[i] = ...``) is kept as copies (``updated_in_place=True``)."""
    trips = ir.Const(None) if online else loop.iter
    in_place = any(isinstance(s, ir.SetItem) for s in ir.walk_stmts(body))
    args = (ir.Const(snapshots), trips, state_tuple(carried))
    call = ir.Call(CHECKPOINTS, args, (("updated_in_place", ir.Const(True)),) if in_place else ())
    plural = "" if snapshots == 1 else "s"
    note = (
        f"binomial checkpointing: the backward sweep keeps {snapshots} state{plural} of this "
        "loop at most, and reruns iterations from them"
    )
    return [ir.Comment(note, note=True), ir.Assign((checkpoints,), call, loop.loc)]


def store(checkpoints: ir.Name, carried: tuple[str, ...], loc) -> ir.Stmt:
    """``c = store_checkpoint(c, (state,))``, at the top of an iteration."""
    call = ir.Call(STORE, (checkpoints, state_tuple(carried)))
    return ir.Assign((checkpoints,), call, loc)


def restore_and_advance(
    checkpoints: ir.Name,
    loop: ir.For | ir.While,
    carried: tuple[str, ...],
    body: tuple[ir.Stmt, ...],
    names: tuple[ir.Name, ir.Name, ir.Name, ir.Name],
) -> list[ir.Stmt]:
    """The top of a backward iteration: the latest state kept, the iterations from it up
    to this one rerun (``body``: a copy of one iteration: a while loop's test block and
    body), and the loop variable of this iteration again where the body reads it.
    ``names``: fresh names for the state kept, the bounds of the rerun and (a while
    loop's) its counter."""
    loc = loop.loc
    kept, start, stop, counter = names
    restore = ir.Call(RESTORE, (checkpoints,))
    out: list[ir.Stmt] = [
        ir.Comment("the latest state kept, and the iterations from it rerun", note=True),
        ir.Assign((kept, start, stop, checkpoints), restore, loc),
    ]
    if len(carried) == 1:  # (`(state,) = kept` would print as `state = kept`)
        first = ir.Call(GETITEM, (kept, ir.Index((ir.Const(0),))))
        out.append(ir.Assign((ir.Name(carried[0]),), first, loc))
    elif carried:
        out.append(ir.Assign(tuple(ir.Name(n) for n in carried), kept, loc))
    advance = (store(checkpoints, carried, loc), *body)
    if isinstance(loop, ir.While):  # (its test holds on each of these iterations)
        out.append(ir.For(counter, ir.Call(RANGE, (start, stop)), advance, loc))
    else:
        window = ir.Call(GETITEM, (loop.iter, ir.Index((ir.Slice(start, stop, None),))))
        out.append(ir.For(loop.target, window, advance, loc))
    if isinstance(loop, ir.For) and loop.target.id in dataflow.deep_reads(body):
        value = ir.Call(GETITEM, (loop.iter, ir.Index((stop,))))
        out.append(ir.Assign((loop.target,), value, loc))
    out.append(ir.Comment("this iteration again, and its backward sweep", note=True))
    return out
