"""Binomial checkpointing (revolve): reverse a long loop keeping only a few of its states.

Reverse mode reads, in its backward sweep, what each iteration of a loop computed. Saving
it all costs memory in proportion to the trip count. A checkpointed loop keeps at most
``snapshots`` states (the values the loop carries from one iteration to the next) and,
for each iteration it reverses, restores the latest snapshot before it and reruns the
iterations in between ("advances"), storing new snapshots on the way where the schedule
says so. With the binomial schedule of Griewank and Walther (revolve), reversing ``n``
iterations with ``s`` snapshots reruns each iteration at most ``r`` times, for the least
``r`` with ``n <= C(s + r, s)``, and reruns as few iterations in all as any schedule with
``s`` snapshots can (Griewank & Walther, ACM TOMS 26(1), 2000).

The schedule, as the generated code runs it:

* the forward sweep runs the loop as written; before iteration ``p`` it calls
  ``store_checkpoint``, which keeps the state if ``p`` is the next position the schedule
  stores (the first is 0), and always keeps the state of the range's last iteration
  (``current``: the state the first backward step starts from, in place of a rerun);
* a ``while`` loop's trip count is known only when it ends: its forward sweep keeps
  the states at multiples of a stride, in at most half the snapshots, doubling the
  stride (and dropping every other state) when they are full; its backward sweep
  reverses each stretch between two kept states with the binomial schedule and the
  snapshots left. With ``s >= 3`` snapshots and ``n`` iterations the stretches are
  shorter than ``L = 2n / (ceil(s / 2) - 1)``, and each is reversed with at least
  ``floor(s / 2)`` free snapshots: each iteration is rerun at most ``r`` times, for the
  least ``r`` with ``L <= C(floor(s / 2) + 1 + r, r)`` (Stumm and Walther's online
  revolve does better; this bound is simple and holds);
* each backward iteration ``i`` (last first) calls ``restore_checkpoint``: it releases
  the snapshot taken after ``i``, restores the latest one at or before ``i`` and says
  which iterations to rerun up to ``i``; the advance calls ``store_checkpoint`` again,
  so the schedule stores where the recursive algorithm would, for the range
  ``[latest, i]`` and the slots still free.

Flattened this way, the schedule is the recursive revolve algorithm: to reverse the
iterations ``[a, b)`` holding a snapshot at ``a`` with ``f`` more slots free, advance to
``m = a + _binomial_split(b - a, f)``, store it, reverse ``[m, b)`` with ``f - 1`` slots,
release it, reverse ``[a, m)`` with ``f``. ``_binomial_split`` picks an ``m`` for which
that is optimal.

This module is the NumPy runtime's; ``s2sgrad.backends.jax.revolve`` is the JAX
one (slots in preallocated buffers, the schedule in ``lax`` control flow).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _binomial_split(length: int, free: int) -> int:
    """How far to advance before the next snapshot, reversing ``length`` iterations that
    start at a snapshot with ``free`` more slots free (``length >= 2``, ``free >= 1``).

    With ``c = free + 1`` checkpoints and ``r`` the least repetition number with
    ``length <= beta(c, r) = C(c + r, c)``, an advance ``j`` is optimal when the rest
    fits ``c - 1`` checkpoints at ``r`` repetitions (``length - j <= beta(c - 1, r)``) and
    the first part is not smaller than one ``r - 2`` can reverse (``j >= beta(c, r - 2)``):
    the smallest such ``j``.
    """
    c = free + 1
    r, beta, previous, before_previous = 0, 1, 0, 0  # beta(c, r), beta(c, r-1), beta(c, r-2)
    while beta < length:
        r += 1
        before_previous, previous, beta = previous, beta, beta * (c + r) // r
    # beta(c - 1, r) = beta(c, r) - beta(c, r - 1)  (Pascal's rule)
    return min(length - 1, max(1, length - (beta - previous), before_previous))


class Checkpoints:
    """The snapshots of one checkpointed loop and where its schedule stands.

    ``positions``/``states``: the snapshots held, oldest first (at most ``capacity``);
    ``current``: the state before the last iteration of the range being advanced, and
    its position; ``position``: the iteration the next ``store_checkpoint`` is before;
    ``end``: where the range being run ends; ``due``: the next position to store
    (None: no more in this range); ``reversing``: the next iteration to reverse.
    ``peak``: the most snapshots held at once.
    """

    __slots__ = (
        "capacity",
        "positions",
        "states",
        "current",
        "position",
        "end",
        "due",
        "reversing",
        "stride",
        "copies",
        "peak",
    )

    def __init__(self, capacity: int, trips: int | None, copies: bool = False):
        if capacity < 1:
            raise ValueError(f"a checkpointed loop needs at least one snapshot, not {capacity}")
        self.capacity = capacity
        self.positions: list[int] = []
        self.states: list[Any] = []
        self.current: tuple[int, Any] | None = None
        self.position = 0
        self.end = trips  # None: a while loop's, until its forward sweep ends
        self.due: int | None = 0
        self.reversing = None if trips is None else trips - 1
        self.stride = 1  # (a while loop's: the spacing of its snapshots)
        self.copies = copies  # the loop updates its state in place: keep and give copies
        self.peak = 0

    def kept(self, state: Any) -> Any:
        """``state`` as a snapshot holds it: itself, or (a state updated in place) copies
        of its arrays, which the loop's later updates cannot reach."""
        if not self.copies:
            return state
        return tuple(np.copy(v) if isinstance(v, np.ndarray) else v for v in state)

    def keep_online(self, p: int, state: Any) -> None:
        """A while loop's forward sweep, before iteration ``p``: keep the states at
        multiples of ``stride``, in at most half the slots; when they are full, drop every
        other one and double the stride. The other half is for the backward sweep, which
        reverses each stretch between two kept states with the binomial schedule."""
        limit = (self.capacity + 1) // 2
        while p % self.stride == 0 and len(self.positions) >= limit:
            kept = [k for k, q in enumerate(self.positions) if q % (2 * self.stride) == 0]
            if len(kept) == len(self.positions):
                return  # (one slot, holding the start: nothing to drop)
            self.positions = [self.positions[k] for k in kept]
            self.states = [self.states[k] for k in kept]
            self.stride *= 2
        if p % self.stride == 0:
            self.positions.append(p)
            self.states.append(state)
            self.peak = max(self.peak, len(self.positions))

    def schedule_next(self, start: int) -> None:
        """Set ``due`` for advancing from a snapshot at ``start`` towards ``end``."""
        free = self.capacity - len(self.positions)
        length = self.end - start
        if free < 1 or length < 3:  # (the last iteration's state is ``current``)
            self.due = None
        else:
            self.due = start + _binomial_split(length, free)

    def __repr__(self) -> str:
        return (
            f"Checkpoints(snapshots at {self.positions} of {self.capacity}, "
            f"before iteration {self.position}, range ends at {self.end})"
        )


def checkpoints(
    snapshots: int, loop_range: Any, state: Any, updated_in_place: bool = False
) -> Checkpoints:
    """An empty schedule for a loop over ``loop_range`` (None: a while loop, whose trip
    count is known when it ends), keeping at most ``snapshots`` copies of ``state`` (read
    for its structure by the JAX runtime). ``updated_in_place``: the loop writes into the
    arrays of its state (``x[i] = ...``), so a snapshot is a copy, and so is a restored
    state."""
    trips = None if loop_range is None else len(loop_range)
    return Checkpoints(snapshots, trips, updated_in_place)


def store_checkpoint(checkpoints: Checkpoints, state: Any) -> Checkpoints:
    """Before an iteration: keep ``state`` if the schedule stores here, then move on."""
    p = checkpoints.position
    if checkpoints.end is None:  # a while loop, running forwards: any may be the last
        checkpoints.current = (p, checkpoints.kept(state))
        checkpoints.keep_online(p, checkpoints.current[1])
    elif p == checkpoints.end - 1:
        checkpoints.current = (p, checkpoints.kept(state))
    elif p == checkpoints.due:
        checkpoints.positions.append(p)
        checkpoints.states.append(checkpoints.kept(state))
        checkpoints.peak = max(checkpoints.peak, len(checkpoints.positions))
        checkpoints.schedule_next(p)
    checkpoints.position = p + 1
    return checkpoints


def restore_checkpoint(checkpoints: Checkpoints) -> tuple[Any, int, int, Checkpoints]:
    """Before reversing the next iteration ``i`` (the last not yet reversed): ``(state,
    start, i, checkpoints)``, the latest state kept at or before ``i`` and its position;
    the iterations ``start .. i-1`` are to be rerun (each after ``store_checkpoint``)."""
    if checkpoints.end is None:  # a while loop's first backward step: it ran `position` times
        checkpoints.end = checkpoints.position
        checkpoints.reversing = checkpoints.position - 1
    i = checkpoints.reversing
    checkpoints.reversing = i - 1
    current = checkpoints.current
    checkpoints.current = None
    if current is not None and current[0] == i:
        state, start = current[1], i
    else:
        if checkpoints.positions[-1] > i:  # the snapshot after i: reversed past it
            checkpoints.positions.pop()
            checkpoints.states.pop()
        start, state = checkpoints.positions[-1], checkpoints.states[-1]
    checkpoints.end = i + 1
    checkpoints.position = start
    checkpoints.schedule_next(start)
    return checkpoints.kept(state), start, i, checkpoints
