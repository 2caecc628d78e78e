"""Random NumPy programs inside the subset s2sgrad claims to support.

``generate(seed)`` gives a :class:`Program`: the text of a module with one or two
helper functions and a function ``f``, and the arguments to call ``f`` with.
Programs mix straight-line code, ``if``/``elif``/``else`` on data, conditional
expressions, ``for`` loops over ``range``, over an array's rows and over
``enumerate``, ``while`` loops (data-independent, data-dependent and ``while
True``), ``break``, ``continue``, early ``return``, augmented assignment, in-place
updates of arrays the function owns (``w[i] = v``, ``w[1:] += v``, ``w[:, j] *= v``),
calls of the helpers, and about a hundred NumPy and ``scipy.special`` functions on
broadcasting shapes.

Values stay where the functions are smooth and finite: logarithms, roots and
divisions see positive expressions (``np.square(e) + 0.5``, ``np.exp(np.tanh(e))``),
``arcsin`` and friends see ``0.9 * np.tanh(e)``, loop updates mix old and new
values so they stay bounded. What the generator cannot guarantee (an overflow,
a branch test that lands next to its threshold) the checker rejects by running
the program first (see ``check.prepare``).

A few programs (``Program.expect_refusal``) use Python that the docs list as
refused; they check that the refusal is a clean ``S2SGradError``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

BASE_SHAPES = [(), (3,), (3,), (2, 3), (1, 3), (2, 1), (4,), (2, 2)]

# Elementwise functions that are smooth and finite everywhere (on bounded inputs).
UNARY_ANY = [
    "np.sin({})",
    "np.cos({})",
    "np.tanh({})",
    "np.arctan({})",
    "np.arcsinh({})",
    "np.square({})",
    "np.negative({})",
    "np.positive({})",
    "(-{})",
    "np.exp(np.sin({}))",
    "np.expm1(np.tanh({}))",
    "np.sinh(np.tanh({}))",
    "np.cosh(np.cos({}))",
    "np.exp2(np.sin({}))",
    "np.deg2rad({})",
    "np.rad2deg(np.tanh({}))",
    "scipy.special.expit({})",
    "scipy.special.erf({})",
    "({} ** 2)",
    "({} * {})",
    "np.abs({})",
    "np.clip({}, -0.6, 0.7)",
    "np.tanh({}) ** 3",
]
# Positive arguments: "{}" is replaced by an expression, which is made positive first.
POSITIVE = [
    "(np.square({}) + 0.5)",
    "np.exp(np.tanh({}))",
    "(1.0 + np.cos({}) ** 2)",
    "np.cosh(np.tanh({}))",
]
UNARY_POS = [
    "np.log({})",
    "np.log2({})",
    "np.log10({})",
    "np.sqrt({})",
    "np.reciprocal({})",
    "np.log1p({})",
    "np.cbrt({})",
    "({} ** 1.5)",
    "({} ** -0.5)",
    "np.float_power({}, 2.5)",
    "np.arccosh(1.0 + {})",
    "scipy.special.gammaln({})",
    "np.power({}, 0.7)",
]
UNIT = ["(0.9 * np.tanh({}))", "(0.5 * np.sin({}))"]
UNARY_UNIT = [
    "np.arcsin({})",
    "np.arccos({})",
    "np.arctanh({})",
    "scipy.special.logit(0.5 + 0.5 * {})",
]
BINARY = [
    "({} + {})",
    "({} - {})",
    "({} * {})",
    "np.add({}, {})",
    "np.subtract({}, {})",
    "np.multiply({}, {})",
    "np.maximum({}, {})",
    "np.minimum({}, {})",
    "np.fmax({}, {})",
    "np.fmin({}, {})",
    "np.logaddexp({}, {})",
    "np.logaddexp2({}, {})",
    "np.where({0} > {1}, {0}, {1})",
]
# Second argument positive.
BINARY_POS = [
    "({} / {})",
    "np.divide({}, {})",
    "np.arctan2({}, {})",
    "np.hypot({}, {})",
    "scipy.special.xlogy({}, {})",
    "({1} ** np.tanh({0}))",
    "np.power({1}, np.sin({0}))",
]


@dataclass
class Program:
    """A generated module and the arguments of its ``f``."""

    seed: str
    source: str
    args: list
    arg_kinds: list  # "array", "float" or "int", one per parameter of f
    expect_refusal: str | None = None  # what the docs say is refused, for the probes
    features: set = field(default_factory=set)


class _Gen:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.counter = 0
        self.features: set[str] = set()
        self.helpers: list[tuple[str, list[tuple], tuple]] = []
        self.loops: list[tuple[str | None, int]] = []
        self.n = 2
        self.has_n = False
        self.params: set[str] = set()
        self.array_out = False

    # ------------------------------------------------------------------ helpers

    def fresh(self, prefix: str = "v") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self) -> str:
        return repr(round(self.rng.uniform(-1.5, 1.5), 2))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # ------------------------------------------------------------------ expressions

    def leaf(self, scope: dict) -> tuple[str, tuple]:
        names = [n for n in scope]
        if names and not self.chance(0.12):
            name = self.rng.choice(names)
            shape = scope[name]
            if len(shape) >= 1 and self.chance(0.2):
                return self.index(name, shape)
            if len(shape) >= 1 and self.loops and self.chance(0.3):
                for var, bound in self.loops:
                    if var is not None and bound <= shape[0]:
                        self.features.add("loop_index")
                        return f"{name}[{var}]", shape[1:]
            return name, shape
        return self.const(), ()

    def index(self, name: str, shape: tuple) -> tuple[str, tuple]:
        """A read of part of a variable: x[0], x[-1], x[1:], x[:, 0], x[::-1]."""
        self.features.add("index")
        n = shape[0]
        options = [(f"{name}[{self.rng.randrange(n)}]", shape[1:])]
        options.append((f"{name}[-1]", shape[1:]))
        if n > 1:
            options.append((f"{name}[1:]", (n - 1,) + shape[1:]))
            options.append((f"{name}[::-1]", shape))
        if len(shape) == 2:
            j = self.rng.randrange(shape[1])
            options.append((f"{name}[:, {j}]", (shape[0],)))
            options.append((f"{name}[{self.rng.randrange(n)}, {j}]", ()))
        return self.rng.choice(options)

    def expr(self, scope: dict, depth: int) -> tuple[str, tuple]:
        if depth <= 0 or self.chance(0.25):
            return self.leaf(scope)
        kind = self.rng.choices(
            ["any", "pos", "unit", "bin", "binpos", "reduce", "shape", "linalg", "method", "ifexp"],
            weights=[22, 10, 4, 20, 8, 14, 12, 3, 5, 3],
        )[0]
        if kind == "ifexp":
            self.features.add("conditional_expression")
            a, sa = self.expr(scope, depth - 1)
            b = self.exact(scope, depth - 1, sa)
            return f"({a} if {self.condition(scope)} else {b})", sa
        if kind == "any":
            e, s = self.expr(scope, depth - 1)
            template = self.rng.choice(UNARY_ANY)
            return template.replace("{}", e), s
        if kind == "pos":
            e, s = self.expr(scope, depth - 1)
            inner = self.rng.choice(POSITIVE).format(e)
            return self.rng.choice(UNARY_POS).format(inner), s
        if kind == "unit":
            e, s = self.expr(scope, depth - 1)
            inner = self.rng.choice(UNIT).format(e)
            return self.rng.choice(UNARY_UNIT).format(inner), s
        if kind in ("bin", "binpos"):
            a, sa = self.expr(scope, depth - 1)
            b, sb = self.broadcastable(scope, depth - 1, sa)
            if kind == "binpos":
                b = self.rng.choice(POSITIVE).format(b)
                text = self.rng.choice(BINARY_POS).format(a, b)
            else:
                text = self.rng.choice(BINARY).format(a, b)
            return text, np.broadcast_shapes(sa, sb)
        if kind == "reduce":
            return self.reduction(scope, depth)
        if kind == "shape":
            return self.shape_op(scope, depth)
        if kind == "linalg":
            return self.linalg(scope, depth)
        return self.method(scope, depth)

    def broadcastable(self, scope: dict, depth: int, target: tuple) -> tuple[str, tuple]:
        """An expression whose shape broadcasts with ``target`` (summed to a scalar if not)."""
        for _ in range(3):
            e, s = self.expr(scope, depth)
            try:
                np.broadcast_shapes(s, target)
                return e, s
            except ValueError:
                continue
        return f"np.sum({e})", ()

    def exact(self, scope: dict, depth: int, target: tuple) -> str:
        """An expression of shape exactly ``target``."""
        e, s = self.broadcastable(scope, depth, target)
        if np.broadcast_shapes(s, target) != target:
            e = f"np.sum({e})"
            s = ()
        if s != target:
            e = self.rng.choice(
                [f"np.broadcast_to({e}, {target!r})", f"({e}) * np.ones({target!r})"]
            )
            self.features.add("broadcast_to")
        return e

    def reduction(self, scope: dict, depth: int) -> tuple[str, tuple]:
        e, s = self.expr(scope, depth - 1)
        if s == ():
            return f"np.sum({e})", ()
        self.features.add("reduction")
        nd = len(s)
        axis = self.rng.randrange(nd)
        rest = s[:axis] + s[axis + 1 :]
        options = [
            (f"np.sum({e})", ()),
            (f"np.sum({e}, axis={axis})", rest),
            (f"np.mean({e})", ()),
            (f"np.mean({e}, axis={axis})", rest),
            (f"np.max({e})", ()),
            (f"np.min({e}, axis={axis})", rest),
            (f"np.amax({e}, axis={axis})", rest),
            (f"np.prod(np.tanh({e}) + 1.5)", ()),
            (f"np.linalg.norm({e} + 2.0)", ()),
            (f"np.cumsum({e}, axis={axis})", s),
            (f"np.cumprod(np.tanh({e}) + 1.0, axis={axis})", s),
            (f"scipy.special.logsumexp({e})", ()),
            (f"scipy.special.softmax({e})", s),
            (f"np.average({e}, axis={axis})", rest),
            (f"np.nansum({e})", ()),
            (f"np.sort({e}, axis={axis})", s),
        ]
        if s[axis] > 1:
            options += [
                (f"np.std({e}, axis={axis})", rest),
                (f"np.var({e})", ()),
                (f"np.diff({e}, axis={axis})", s[:axis] + (s[axis] - 1,) + s[axis + 1 :]),
                (f"np.ptp({e}, axis={axis})", rest),
            ]
        if nd == 2:
            options.append((f"np.trace({e})", ()))
        return self.rng.choice(options)

    def shape_op(self, scope: dict, depth: int) -> tuple[str, tuple]:
        self.features.add("shape")
        e, s = self.expr(scope, depth - 1)
        nd = len(s)
        size = int(np.prod(s)) if s else 1
        options: list[tuple[str, tuple]] = [
            (f"np.expand_dims({e}, 0)", (1,) + s),
            (f"np.stack([{e}, np.sin({e})])", (2,) + s),
            (f"np.tile({e}, 2)", s[:-1] + (2 * s[-1],) if s else (2,)),
            (f"np.repeat({e}, 2)", (2 * size,)),
            (f"np.reshape({e}, (-1,))", (size,)),
            (f"np.ravel({e})", (size,)),
            (f"np.atleast_1d({e})", s if s else (1,)),
        ]
        if nd >= 1:
            ax = self.rng.randrange(nd)
            options += [
                (f"np.flip({e}, axis={ax})", s),
                (f"np.roll({e}, 1, axis={ax})", s),
                (f"np.concatenate([{e}, np.cos({e})], axis={ax})", _grow(s, ax, 2)),
                (f"np.pad({e}, 1)", tuple(d + 2 for d in s)),
                (f"np.take({e}, np.array([0, {s[0] - 1}]), axis=0)", (2,) + s[1:]),
            ]
        if nd == 1:
            n = s[0]
            b, sb = self.expr(scope, depth - 1)
            if sb == s:
                options += [
                    (f"np.outer({e}, {b})", (n, n)),
                    (f"np.dot({e}, {b})", ()),
                    (f"np.inner({e}, {b})", ()),
                    (f"np.vdot({e}, {b})", ()),
                    (f"np.kron({e}, {b})", (n * n,)),
                    (f"np.hstack([{e}, {b}])", (2 * n,)),
                    (f"np.vstack([{e}, {b}])", (2, n)),
                    (f"np.column_stack([{e}, {b}])", (n, 2)),
                    (f"np.convolve({e}, {b})", (2 * n - 1,)),
                    (f"np.cross({e}, {b})", s) if n == 3 else (f"np.dot({e}, {b})", ()),
                ]
            options += [(f"np.diag({e})", (n, n)), (f"np.sort({e})", s)]
        if nd == 2:
            r, c = s
            options += [
                (f"np.transpose({e})", (c, r)),
                (f"({e}).T", (c, r)),
                (f"np.swapaxes({e}, 0, 1)", (c, r)),
                (f"np.tril({e})", s),
                (f"np.triu({e})", s),
                (f"np.diagonal({e})", (min(r, c),)),
                (f"np.reshape({e}, ({c}, {r}))", (c, r)),
            ]
            if r == 1:
                options.append((f"np.squeeze({e}, axis=0)", (c,)))
            if c == 1:
                options.append((f"np.squeeze({e}, axis=1)", (r,)))
            v, sv = self.expr(scope, depth - 1)
            if sv == (c,):
                options += [
                    (f"({e} @ {v})", (r,)),
                    (f"np.matmul({e}, {v})", (r,)),
                    (f"np.einsum('ij,j->i', {e}, {v})", (r,)),
                    (f"np.tensordot({e}, {v}, axes=1)", (r,)),
                ]
            if sv == (r,):
                options.append((f"({v} @ {e})", (c,)))
            options.append((f"({e} @ ({e}).T)", (r, r)))
            options.append((f"np.einsum('ij,ij->', {e}, {e})", ()))
        return self.rng.choice(options)

    def linalg(self, scope: dict, depth: int) -> tuple[str, tuple]:
        """Functions of a well-conditioned matrix: 3I + 0.2 * outer(u, w)."""
        self.features.add("linalg")
        u, su = self.expr(scope, depth - 1)
        if len(su) != 1:
            u, su = f"np.ravel({u})", (int(np.prod(su)) if su else 1,)
        n = su[0]
        w = self.exact(scope, depth - 1, su)
        m = f"(3.0 * np.eye({n}) + 0.2 * np.outer(np.tanh({u}), np.tanh({w})))"
        options = [
            (f"np.linalg.inv({m})", (n, n)),
            (f"np.linalg.det({m})", ()),
            (f"np.linalg.solve({m}, {u})", (n,)),
            (f"np.linalg.slogdet({m})[1]", ()),
            (f"np.linalg.matrix_power({m}, 2)", (n, n)),
        ]
        return self.rng.choice(options)

    def method(self, scope: dict, depth: int) -> tuple[str, tuple]:
        self.features.add("method")
        e, s = self.expr(scope, depth - 1)
        if s == ():
            return f"np.sum({e})", ()
        options = [
            (f"({e}).sum()", ()),
            (f"({e}).mean(axis=0)", s[1:]),
            (f"({e}).max()", ()),
            (f"({e}).copy()", s),
            (f"({e}).reshape(-1)", (int(np.prod(s)),)),
        ]
        return self.rng.choice(options)

    # ------------------------------------------------------------------ statements

    def condition(self, scope: dict) -> str:
        e, s = self.expr(scope, 2)
        c = repr(round(self.rng.uniform(-0.5, 0.5), 2))
        op = self.rng.choice([">", "<", ">=", "<="])
        if s != ():
            e = self.rng.choice([f"np.sum({e})", f"np.mean({e})", f"np.max({e})"])
        form = self.rng.random()
        if form < 0.1:
            other, so = self.expr(scope, 1)
            if so != ():
                other = f"np.sum({other})"
            return f"{e} {op} {c} and {other} < 0.8"
        if form < 0.15:
            return f"not {e} {op} {c}"
        return f"{e} {op} {c}"

    def block(
        self, scope: dict, owned: set, depth: int, loops: list, n_stmts: int, indent: str
    ) -> list[str]:
        """Statements at ``indent``; new names made here are visible only below them here."""
        scope = dict(scope)
        lines: list[str] = []
        for _ in range(n_stmts):
            lines += self.statement(scope, owned, depth, loops, indent)
        return lines or [f"{indent}pass"]

    def statement(self, scope: dict, owned: set, depth: int, loops: list, ind: str) -> list[str]:
        kinds = ["new", "update", "aug", "owned", "inplace", "if", "for", "while", "call", "break"]
        kinds += ["continue", "return", "rows"]
        weights = [30, 12, 6, 5, 8, 9, 7, 4, 8, 4, 3, 3, 4]
        if depth <= 0:
            weights[5:8] = [0, 0, 0]
            weights[12] = 0
        if not loops:
            weights[9] = weights[10] = 0
        if not self.helpers:
            weights[8] = 0
        if self.array_out or not ind.startswith("     "):
            weights[11] = 0  # an early return: only of a scalar, and inside a block
        kind = self.rng.choices(kinds, weights=weights)[0]
        if kind == "inplace" and not [n for n in scope if n in owned]:
            kind = "owned"
        if kind == "new":
            e, s = self.expr(scope, 3)
            if _is_name(e):
                e = f"{e} * 1.0"
            name = self.fresh()
            scope[name] = s
            return [f"{ind}{name} = {e}"]
        if kind in ("update", "aug"):
            name = self.rng.choice(list(scope))
            s = scope[name]
            if kind == "aug" and (s != () or name in self.params) and name not in owned:
                kind = "update"  # `a += e` on an array writes into it: only on owned arrays
            if kind == "update" and name in owned:
                kind = "aug"
            e = self.exact(scope, 2, s)
            if kind == "aug":
                self.features.add("augassign")
                op = self.rng.choice(["+=", "-=", "*="])
                if op == "*=":
                    e = f"np.tanh({e})"
                return [f"{ind}{name} {op} {e}"]
            mix = self.rng.choice(
                [
                    f"0.5 * {name} + 0.5 * np.tanh({e})",
                    f"np.sin({name}) + 0.3 * {e}",
                    f"{name} * 0.9 + 0.1 * {e}",
                    f"np.tanh({name} + {e})",
                ]
            )
            return [f"{ind}{name} = {mix}"]
        if kind == "owned":
            shapes = [s for s in scope.values() if s != ()] or [(3,)]
            s = self.rng.choice(shapes)
            arrays = [n for n, t in scope.items() if t == s]
            name = self.fresh("w")
            options = [f"np.zeros({s!r})", f"np.ones({s!r})", f"np.full({s!r}, 0.5)"]
            if arrays:
                a = self.rng.choice(arrays)
                options += [f"np.copy({a})", f"{a}.copy()", f"np.array({a})", f"{a} * 1.0"]
                options += [f"np.zeros_like({a})"]
            scope[name] = s
            owned.add(name)
            self.features.add("owned")
            return [f"{ind}{name} = {self.rng.choice(options)}"]
        if kind == "inplace":
            return self.inplace(scope, owned, loops, ind)
        if kind == "if":
            self.features.add("if")
            lines = [f"{ind}if {self.condition(scope)}:"]
            lines += self.block(
                scope, owned, depth - 1, loops, self.rng.randint(1, 3), ind + "    "
            )
            for _ in range(self.rng.choice([0, 0, 1, 2])):
                self.features.add("elif")
                lines.append(f"{ind}elif {self.condition(scope)}:")
                lines += self.block(
                    scope, owned, depth - 1, loops, self.rng.randint(1, 2), ind + "    "
                )
            if self.chance(0.6):
                lines.append(f"{ind}else:")
                lines += self.block(
                    scope, owned, depth - 1, loops, self.rng.randint(1, 2), ind + "    "
                )
            return lines
        if kind == "for":
            self.features.add("for")
            i = self.fresh("i")
            bound_opts = ["2", "3"] + (["n", "n"] if self.has_n else [])
            arrays = [nm for nm, s in scope.items() if s != ()]
            if arrays:
                a = self.rng.choice(arrays)
                bound_opts.append(f"len({a})")
                bound = self.rng.choice(bound_opts)
                nb = {"2": 2, "3": 3, "n": self.n}.get(bound, scope[a][0] if arrays else 0)
            else:
                bound = self.rng.choice(bound_opts)
                nb = {"2": 2, "3": 3, "n": self.n}[bound]
            head = f"{ind}for {i} in range({bound}):"
            if self.chance(0.15):
                head = f"{ind}for {i} in range(1, {bound}):"
            self.loops.append((i, nb))
            body = self.block(
                scope, owned, depth - 1, self.loops, self.rng.randint(1, 3), ind + "    "
            )
            self.loops.pop()
            return [head] + body
        if kind == "while":
            self.features.add("while")
            k = self.fresh("k")
            limit = self.rng.randint(2, 4)
            if self.chance(0.4):
                test = f"{k} < {limit} and {self.condition(scope)}"
                self.features.add("while_data")
            elif self.chance(0.2):
                test = "True"
            else:
                test = f"{k} < {limit}"
            lines = [f"{ind}{k} = 0", f"{ind}while {test}:", f"{ind}    {k} = {k} + 1"]
            if test == "True":
                lines.append(f"{ind}    if {k} >= {limit}:")
                lines.append(f"{ind}        break")
            self.loops.append((None, limit))
            lines += self.block(
                scope, owned, depth - 1, self.loops, self.rng.randint(1, 3), ind + "    "
            )
            self.loops.pop()
            return lines
        if kind == "call":
            self.features.add("call")
            hname, hshapes, hout = self.rng.choice(self.helpers)
            args = [self.exact(scope, 1, hs) for hs in hshapes]
            name = self.fresh()
            scope[name] = hout
            return [f"{ind}{name} = {hname}({', '.join(args)})"]
        if kind == "rows":
            return self.rows(scope, owned, depth, ind)
        if kind == "return":
            self.features.add("early_return")
            e, s = self.expr(scope, 2)
            if s != ():
                e = f"np.sum({e})"
            return [f"{ind}if {self.condition(scope)}:", f"{ind}    return {e}"]
        self.features.add(kind)  # break or continue
        return [f"{ind}if {self.condition(scope)}:", f"{ind}    {kind}"]

    def rows(self, scope: dict, owned: set, depth: int, ind: str) -> list[str]:
        """``for r in a:`` or ``for i, r in enumerate(a):`` over the rows of an array."""
        arrays = [n for n, s in scope.items() if s != () and n not in owned]
        if not arrays:
            return []
        a = self.rng.choice(arrays)
        shape = scope[a]
        r = self.fresh("r")
        inner = dict(scope)
        inner[r] = shape[1:]
        if self.chance(0.5):
            self.features.add("for_rows")
            head = f"{ind}for {r} in {a}:"
            self.loops.append((None, shape[0]))
        else:
            self.features.add("for_enumerate")
            i = self.fresh("i")
            head = f"{ind}for {i}, {r} in enumerate({a}):"
            self.loops.append((i, shape[0]))
        body = self.block(inner, owned, depth - 1, self.loops, self.rng.randint(1, 3), ind + "    ")
        self.loops.pop()
        return [head] + body

    def inplace(self, scope: dict, owned: set, loops: list, ind: str) -> list[str]:
        self.features.add("inplace")
        name = self.rng.choice([n for n in scope if n in owned])  # not set order: hash seeds
        s = scope[name]
        n0 = s[0]
        idx_opts = [str(self.rng.randrange(n0))]
        for var, bound in loops:
            if var is not None and bound <= n0:
                idx_opts += [var, var]
        i = self.rng.choice(idx_opts)
        op = self.rng.choice(["=", "=", "=", "+=", "-=", "*="])
        forms = [(f"{name}[{i}]", s[1:])]
        if n0 > 1:
            forms.append((f"{name}[1:]", (n0 - 1,) + s[1:]))
            forms.append((f"{name}[:-1]", (n0 - 1,) + s[1:]))
        if len(s) == 2:
            j = self.rng.randrange(s[1])
            forms.append((f"{name}[{i}, {j}]", ()))
            forms.append((f"{name}[:, {j}]", (n0,)))
        target, ts = self.rng.choice(forms)
        e, es = self.broadcastable(scope, 2, ts)
        if np.broadcast_shapes(es, ts) != ts:
            e = f"np.sum({e})"
        if op == "*=":
            e = f"np.tanh({e})"
        return [f"{ind}{target} {op} {e}"]

    # ------------------------------------------------------------------ functions

    def function(
        self, name: str, params: list[str], shapes: list[tuple], array_out: bool
    ) -> tuple[list[str], tuple]:
        """``def name(params)``; ``shapes`` are those of the float parameters (the first ones)."""
        scope = dict(zip(params, shapes))
        self.params = set(params)
        self.array_out = array_out
        owned: set = set()
        body: list[str] = []
        for _ in range(self.rng.randint(2, 7) if name == "f" else self.rng.randint(1, 3)):
            body += self.statement(scope, owned, 2 if name == "f" else 1, self.loops, "    ")
        if array_out:
            target = next((s for s in shapes if s != ()), (3,))
            e = self.exact(scope, 2, target)
            self.features.add("array_out")
            out_shape = target
        else:
            names = list(scope)
            made = [v for v in names if v not in params]
            picked = made[-3:] + self.rng.sample(names, min(2, len(names)))
            terms = []
            for v in dict.fromkeys(picked):
                red = self.rng.choice(["np.sum({})", "np.mean({})", "0.5 * np.sum({})"])
                terms.append(red.format(v) if scope[v] != () else v)
            e = " + ".join(terms)
            if all(scope[v] == () for v in dict.fromkeys(picked)):
                e = f"{e} + 0.0"
            out_shape = ()
        return [f"def {name}({', '.join(params)}):"] + body + [f"    return {e}"], out_shape


PROBES = {
    "try": "    try:\n        y = np.sin(x)\n    except ValueError:\n        y = x\n    return np.sum(y)",
    "lambda": "    g = lambda t: t * 2.0\n    return np.sum(g(x))",
    "comprehension": "    return np.sum(np.array([t * t for t in x]))",
    "chained comparison": "    if 0.0 < np.sum(x) < 10.0:\n        x = x * 2.0\n    return np.sum(x)",
    "for/else": "    s = 0.0\n    for i in range(2):\n        s = s + x[i]\n    else:\n        s = s * 2.0\n    return s",
    "in-place on an argument": "    x[0] = 1.0\n    return np.sum(x * x)",
    "assert": "    assert np.sum(x) > -100.0\n    return np.sum(x)",
    "global": "    global G\n    return np.sum(x)",
    "starred args": "    def g(*a):\n        return a[0]\n    return np.sum(g(x))",
}


def generate(seed: str, probe_rate: float = 0.02) -> Program:
    """The program for ``seed`` (any string: a run uses ``f"{run_seed}-{index}"``)."""
    rng = random.Random(seed)
    arg_rng = np.random.default_rng(rng.getrandbits(32))
    header = ["import numpy as np", "import scipy.special", "", ""]
    if rng.random() < probe_rate:
        what = rng.choice(sorted(PROBES))
        source = "\n".join(header + ["def f(x):", PROBES[what], ""])
        return Program(seed, source, [arg_rng.uniform(-1, 1, 3)], ["array"], expect_refusal=what)
    g = _Gen(rng)
    g.n = rng.choice([2, 3])
    lines = list(header)
    for k in range(rng.choice([0, 0, 1, 1, 2])):
        nparams = rng.randint(1, 2)
        shapes = [rng.choice(BASE_SHAPES) for _ in range(nparams)]
        params = [f"a{k}{j}" for j in range(nparams)]
        text, out = g.function(f"helper{k}", params, shapes, array_out=rng.random() < 0.3)
        g.helpers.append((f"helper{k}", shapes, out))
        lines += text + ["", ""]
    nparams = rng.randint(1, 3)
    shapes = [rng.choice(BASE_SHAPES) for _ in range(nparams)]
    if all(s == () for s in shapes):
        shapes[0] = (3,)
    params = ["x", "y", "z"][:nparams]
    kinds = ["array" if s != () else rng.choice(["float", "array"]) for s in shapes]
    g.has_n = has_n = rng.random() < 0.5
    if has_n:
        params.append("n")
        kinds.append("int")
    text, _ = g.function("f", params, shapes, rng.random() < 0.15)
    lines += text + [""]
    args: list = []
    for s, k in zip(shapes, kinds):
        if k == "float":
            args.append(float(round(arg_rng.uniform(-1.0, 1.0), 6)))
        else:
            args.append(arg_rng.uniform(-1.0, 1.0, size=s))
    if has_n:
        args.append(g.n)
    return Program(seed, "\n".join(lines), args, kinds, features=g.features)


def _grow(s: tuple, axis: int, k: int) -> tuple:
    return s[:axis] + (s[axis] * k,) + s[axis + 1 :]


def _is_name(text: str) -> bool:
    return text.isidentifier()
