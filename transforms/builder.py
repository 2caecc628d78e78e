"""State shared by the forward and reverse transforms while they build a derivative."""

from __future__ import annotations

from dataclasses import replace

from s2sgrad.transforms.analysis import Activity
from s2sgrad.transforms.names import FreshNames
from s2sgrad.transforms.prims import GETITEM

from s2sgrad import ir


class DerivativeBuilder:
    """The function being differentiated, its activity, fresh names and compiler temporaries.

    ``compilation`` serves derivatives of called user functions (see pipeline.Compilation);
    ``containers`` are the names that may hold tuples/lists/dicts.
    """

    def __init__(
        self,
        fn: ir.FunctionDef,
        activity: Activity,
        names: FreshNames,
        compilation,
        containers: frozenset[str] = frozenset(),
    ):
        self.fn = fn
        self.act = activity
        self.names = names
        self.compilation = compilation
        self.containers = containers
        self.temps: set[str] = set(fn.temps)

    def temp(self) -> ir.Name:
        """A fresh single-use temporary (codegen may print it inside its one use)."""
        t = ir.Name(self.names.temp())
        self.temps.add(t.id)
        return t


def split_aux(fn: ir.FunctionDef, names: FreshNames) -> ir.FunctionDef:
    """``return result`` -> ``value = result[0]; return value`` (the aux part is not differentiated)."""
    *body, ret = fn.body
    value = ir.Name(names.fresh("value"))
    pick = ir.Assign((value,), ir.Call(GETITEM, (ret.value, ir.Index((ir.Const(0),)))), ret.loc)
    return replace(fn, body=(*body, pick, replace(ret, value=value)))
