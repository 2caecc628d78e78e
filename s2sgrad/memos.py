"""Memos kept on the function they are about, not in a table keyed by it.

A derivative memoized for a function refers back to it: the bindings it re-checks hold
the function's globals (which hold the function), the generated module holds the user
objects bound into it, a jitted entry's closure holds the entry. In a table weakly
keyed by the function such a value keeps its own key alive, so no memoized function,
its module or its compiled derivative (XLA executables included) would ever be freed:
a notebook redefining a function, or a program making many, would grow without end.
Kept in the function's ``__dict__``, they form a cycle the garbage collector frees
with the function.

``functools.wraps`` copies a function's ``__dict__`` onto its wrapper, so a memo
records its owner and answers only to it. ``clear_all`` forgets every memo at once.
"""

from __future__ import annotations

import types
import weakref
from typing import Any

_generation = 0  # bumped by clear_all: older memos read as empty


class _Memo:
    __slots__ = ("owner", "generation", "table")

    def __init__(self, owner: types.FunctionType):
        self.owner = weakref.ref(owner)
        self.generation = _generation
        self.table: dict[Any, Any] = {}


def table_of(fn: types.FunctionType, name: str) -> dict:
    """The memo table ``name`` of ``fn`` (empty the first time), stored on ``fn``."""
    attribute = f"__s2sgrad_{name}__"
    memo = fn.__dict__.get(attribute)
    if not (isinstance(memo, _Memo) and memo.owner() is fn and memo.generation == _generation):
        memo = _Memo(fn)
        fn.__dict__[attribute] = memo
    return memo.table


def clear_all() -> None:
    """Forget every memo, as a fresh process would have none."""
    global _generation
    _generation += 1
