"""The JAX runtime helpers (``s2sgrad.backends.jax.runtime``) against their NumPy twins.

Generated JAX-backend code imports the same helper names from
``s2sgrad.backends.jax.runtime`` as NumPy code does from ``s2sgrad.runtime``, so the two
modules must offer the same names and signatures and compute the same values.
Each case of the table below calls a helper on NumPy arguments and its twin on
the same values as jax arrays, eagerly and under ``jax.jit`` (with the
non-array arguments, such as axes and modes, held static); all three must agree.
"""

from __future__ import annotations

import ast
import copy
import inspect
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2sgrad import runtime as rt
from s2sgrad.backends.jax import runtime as rtj

RNG = np.random.default_rng(0)


def r(*shape):
    return RNG.standard_normal(shape)


# --------------------------------------------------------------------------- the two modules


def test_public_names_match():
    """The runtime package re-exports every public function of its family modules."""
    numpy_names = {
        name
        for family in rt.FAMILIES
        for name, value in vars(family).items()
        if inspect.isfunction(value)
        and value.__module__ == family.__name__
        and not name.startswith("_")
    }
    assert set(rtj.__all__) == numpy_names
    assert set(rt.__all__) == numpy_names
    jax_functions = {n for n, v in vars(rtj).items() if inspect.isfunction(v) and n[0] != "_"}
    assert jax_functions == numpy_names
    assert len(rtj.__all__) == len(set(rtj.__all__))


@pytest.mark.parametrize("name", sorted(rt.__all__))
def test_signatures_match(name):
    def shape_of(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    assert shape_of(getattr(rtj, name)) == shape_of(getattr(rt, name))


def test_foldable_helpers_are_the_numpy_ones():
    foldable = [n for n in rt.__all__ if getattr(getattr(rt, n), "__s2sgrad_foldable__", False)]
    assert "inverse_permutation" in foldable
    for name in foldable:
        assert getattr(rtj, name) is getattr(rt, name)
    assert rtj.foldable is rt.foldable


def _normalized_body(fn) -> str:
    """``fn``'s code without its docstring and annotations, ``jnp.``/``xp.`` spelled ``np.``."""
    tree = ast.parse(inspect.getsource(fn)).body[0]
    if isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant):
        tree.body = tree.body[1:]
    tree.returns = None
    for arg in ast.walk(tree.args):
        if isinstance(arg, ast.arg):
            arg.annotation = None
    return ast.unparse(tree).replace("jnp.", "np.").replace("xp.", "np.")


def test_no_helper_is_written_twice():
    """One runtime, written once: a helper the JAX runtime defines itself must differ from
    the NumPy one by more than the namespace; every other helper is the NumPy one's code,
    run with ``xp = jax.numpy``."""
    here = pathlib.Path(rtj.__file__).parent  # (this module, or another of the JAX backend's)
    own = [
        name
        for name, value in vars(rtj).items()
        if inspect.isfunction(value) and pathlib.Path(value.__code__.co_filename).parent == here
    ]
    assert own, "the JAX runtime defines the helpers that differ"
    numpy_functions = {n: v for family in rt.FAMILIES for n, v in vars(family).items()}
    for name in own:
        if name in numpy_functions:
            assert _normalized_body(getattr(rtj, name)) != _normalized_body(
                numpy_functions[name]
            ), f"{name} is the NumPy helper again: delete it from backends/jax/runtime.py"
    for name in rt.__all__:
        helper = getattr(rtj, name)
        if name not in own:
            assert helper.__code__ is getattr(rt, name).__code__
            if helper is not getattr(rt, name):  # an adopted copy, not a host-side helper
                assert helper.__globals__ is vars(rtj) and rtj.xp is jnp
                assert helper.__module__ == rtj.__name__


def test_imports_stay_light():
    """Generated code imports this module: nothing of the compiler (libcst, black, transforms)."""
    tree = ast.parse(pathlib.Path(rtj.__file__).read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module)
    allowed = {"__future__", "math", "operator", "typing", "jax", "jax.numpy", "numpy"}
    ours = {m for m in modules if m.startswith("s2sgrad.runtime")} | {"s2sgrad", "s2sgrad.backends"}
    ours.add("s2sgrad.backends.jax.revolve")  # the checkpoint schedule's buffers
    assert modules <= allowed | ours, modules - allowed  # s2sgrad.backends: for rebinding


# --------------------------------------------------------------------------- the table


def case(fn, *args, static=(), id=None):
    """``fn`` called with ``args``; positions in ``static`` stay Python values under ``jax.jit``."""
    return pytest.param(fn, args, frozenset(static), id=id)


def _ids(cases):
    seen: dict[str, int] = {}
    out = []
    for c in cases:
        fn = c.values[0]
        seen[fn] = seen.get(fn, 0) + 1
        out.append(pytest.param(*c.values, id=c.id or f"{fn}-{seen[fn]}"))
    return out


def _norm_case(x, ord, axis=None, keepdims=False):
    ans = np.linalg.norm(x, ord, axis, keepdims)
    return case("norm_direction", x, ans, ord, axis, keepdims, static=(2, 3, 4))


def _tie_case(a, reduce, axis=None, keepdims=False):
    return case(
        "tie_shares", a, reduce(a, axis=axis, keepdims=keepdims), axis, keepdims, static=(2, 3)
    )


def _spread_case(a, std, axis=None, keepdims=False):
    ans = std(a, axis=axis, keepdims=keepdims)
    return case("resolved_spread", ans, a, axis, keepdims, static=(2, 3))


def _lse_case(a, axis=None, keepdims=False, b=None):
    ans = np.log(np.sum(np.exp(a) * (1.0 if b is None else b), axis=axis, keepdims=keepdims))
    return case("logsumexp_shares", a, ans, axis, keepdims, b, static=(2, 3))


def _product_cases(name, shapes, product):
    out = []
    for a_shape, b_shape in shapes:
        a, b = r(*a_shape), r(*b_shape)
        g = r(*np.shape(product(a, b)))
        out += [case(f"{name}_lhs", g, a, b), case(f"{name}_rhs", g, a, b)]
    return out


def _tensordot_cases():
    out = []
    for a_shape, b_shape, axes in [
        ((2, 3, 4), (3, 4, 5), 2),
        ((3, 2, 4), (2, 3, 5), ([1, 0], [0, 1])),
        ((2,), (3,), 0),
        ((2, 3, 4), (4, 5), ([-1], [0])),
    ]:
        a, b = r(*a_shape), r(*b_shape)
        g = r(*np.tensordot(a, b, axes).shape)
        out += [case(f"tensordot_adjoint_{s}", g, a, b, axes, static=(3,)) for s in ("lhs", "rhs")]
    return out


def _einsum_cases():
    out = []
    for subscripts, shapes, ks in [
        ("ij,jk->ik", [(2, 3), (3, 4)], (0, 1)),
        ("ij,jk", [(2, 3), (3, 4)], (1,)),
        ("ii->", [(3, 3)], (0,)),
        ("ij->", [(2, 3)], (0,)),
        ("...ij,...jk->...ik", [(2, 2, 3), (1, 3, 4)], (0, 1)),
    ]:
        ops = [r(*s) for s in shapes]
        g = r(*np.einsum(subscripts, *ops).shape)
        for k in ks:
            out.append(case("einsum_adjoint", g, subscripts, ops, k, static=(1, 3)))
        out.append(
            case("einsum_tangent", subscripts, ops, ks[-1], r(*shapes[ks[-1]]), static=(0, 2))
        )
    with_none = [r(2, 3), r(3), None]  # operands the call did not pass come last
    g = r(2)
    out.append(case("einsum_tangent", "ij,j->i", with_none, 1, r(3), static=(0, 2)))
    out.append(case("einsum_adjoint", g, "ij,j->i", with_none, 0, static=(1, 3)))
    out.append(case("einsum_adjoint", g, "ij,j->i", with_none, 2, static=(1, 3)))
    return out


def _matrix(*batch, n=3):
    return r(*batch, n, n) + 3 * np.eye(n)


_X = r(3, 2)
_A = r(2, 3, 2)
_MAT = r(3, 4)
_TIES = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
_ZEROS = r(2, 3, 2)
_ZEROS[0, 1, 0] = 0.0
_ZEROS[1, :, 1] = 0.0
_SCAN = r(3, 4)
_SCAN_ZEROS = _SCAN.copy()
_SCAN_ZEROS[1, 2] = 0.0
_SCAN_ZEROS[2, 0] = 0.0
_CLIP = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
_VECTOR = np.array([0.0, -2.0, 2.0, 1.5, -0.5])
_JOIN = [
    ([np.float64(1.5), r(2), r(3)], "hstack"),
    ([r(3), r(2, 3)], "vstack"),
    ([r(3), r(3)], "dstack"),
    ([r(2, 3), r(2, 3, 2)], "dstack"),
    ([r(3), r(3, 2)], "column_stack"),
]

CASES = [
    # broadcasting
    case("unbroadcast", r(2, 3), r(3)),
    case("unbroadcast", r(2, 3), r(2, 1)),
    case("unbroadcast", r(4, 1, 3), r(2, 1)),
    case("unbroadcast", r(3), r(2, 3)),
    case("unbroadcast", r(2, 3), 1.0),
    case("unbroadcast", 2.5, 1.0),
    case("broadcast_like", r(3), r(2, 3)),
    case("broadcast_like", r(2, 3), r(2, 3)),
    case("broadcast_like", 2.0, r(2, 1)),
    case("cast_like", r(2, 3), r(2, 3).astype(np.float32)),
    # sorting and rolling
    case("sort_order", np.array([[3.0, 1.0, 3.0], [0.0, 2.0, 0.0]]), -1, static=(1,)),
    case("sort_order", np.array([[3.0, 1.0, 3.0], [0.0, 2.0, 0.0]]), 0, static=(1,)),
    case("negated_shift", 2, static=(0,)),
    case("negated_shift", (1, -2), static=(0,)),
    # reductions
    case("unreduce", r(), _A, None, False, static=(2, 3)),
    case("unreduce", r(1, 1, 1), _A, None, True, static=(2, 3)),
    case("unreduce", r(2, 3, 1), _A, -1, True, static=(2, 3)),
    case("unreduce", r(3), _A, (-1, 0), False, static=(2, 3)),
    case("unreduce", r(2, 3, 2), _A, (), False, static=(2, 3)),
    case("rereduce", _A, r(), None, False, static=(2, 3)),
    case("rereduce", _A, r(1, 1, 1), None, True, static=(2, 3)),
    case("rereduce", _A, r(2, 3, 1), -1, True, static=(2, 3)),
    case("rereduce", _A, r(3), (-1, 0), False, static=(2, 3)),
    case("rereduce", _A, r(2, 3, 2), (), False, static=(2, 3)),
    *[case("prod_of_others", _ZEROS, axis, static=(1,)) for axis in [None, (0, 2), ()]],
    *[
        case("prod_of_others_tangent", _ZEROS, _A, axis, static=(2,))
        for axis in [None, (0, 2), 1, ()]
    ],
    *[
        case("grouped_layout", shape, axis, static=(0, 1))
        for shape, axis in [((2, 3, 4), (2, 0)), ((2, 3), None), ((3,), -1), ((2, 2), ())]
    ],
    *[
        case("norm_power", ndim, ord, axis, static=(0, 1, 2))
        for ndim, ord, axis in [(1, None, None), (2, 3, 1), (2, 1, None), (3, -np.inf, (0, 2))]
    ],
    _tie_case(_TIES, np.max, 1),
    _tie_case(_TIES, np.min, None, True),
    _spread_case(np.array([[2.9223463588536864] * 3, [0.1, -0.4, 0.8]]), np.std, 1),
    _spread_case(np.array([[0.5, np.nan], [0.5, 0.2], [0.5, 0.7]]), np.nanstd, 0, True),
    _spread_case(np.zeros((2, 3)), np.std),
    _tie_case(np.array([[1.0, 1.0], [0.0, 2.0], [2.0, 2.0]]), np.max, (0,)),
    case("average_weights", _A, None, None, False, static=(1, 3)),
    case("average_weights", _A, 1, r(2, 3, 2), False, static=(1, 3)),
    case("average_weights", _A, -1, r(2), False, static=(1, 3)),
    case("average_weights", r(2, 3, 4), (2, 0), r(4, 2), False, static=(1, 3)),
    case("unaverage_weights", r(2, 3, 2), r(2, 3, 2), _A, 1, static=(3,)),
    case("unaverage_weights", r(2, 3, 2), 2.0, _A, 1, static=(3,)),
    case("unaverage_weights", r(2, 3, 2), r(2), _A, -1, static=(3,)),
    case("unaverage_weights", r(2, 3, 4), r(4, 2), r(2, 3, 4), (2, 0), static=(3,)),
    *[
        case(fn, r(*shape), a, axis, static=(2,))
        for fn in ["cumprod_tangent", "uncumprod"]
        for a, axis, shape in [
            (_SCAN, None, (12,) if fn == "uncumprod" else (3, 4)),
            (_SCAN_ZEROS, 0, (3, 4)),
            (_SCAN_ZEROS, None, (12,) if fn == "uncumprod" else (3, 4)),
        ]
    ],
    case("cumprod_tangent", 0.5, _SCAN_ZEROS, 1, static=(2,)),
    _lse_case(r(2, 3)),
    _lse_case(r(2, 3, 2), (0, -1), True),
    _lse_case(r(2, 3), 0, False, np.abs(r(3))),
    *[_norm_case(_VECTOR, ord) for ord in [1, np.inf, 0, 3]],
    _norm_case(r(2, 5), 2, -1, True),
    _norm_case(np.array([[1.0, -2.0, 2.0], [0.0, 0.0, 0.5]]), -np.inf, 1),
    *[_norm_case(r(3, 4), ord) for ord in ["nuc", -2, -1, np.inf]],
    _norm_case(r(3, 2, 4), "nuc", (2, 0), True),
    _norm_case(np.array([[1.0, -1.0], [-1.0, 1.0]]), 1),
    # non-smooth points
    case("greater_share", np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])),
    case("greater_share", np.array([[0.0], [1.0]]), np.array([0.0, 1.0, 2.0])),
    case("greater_share", r(2, 3), 0.5),
    case("clip_shares", _CLIP, np.zeros(5), np.ones(5)),
    case("clip_shares", _CLIP, None, 1.0),
    case("clip_shares", _CLIP, 0.0, None),
    case("clip_shares", r(2, 5), np.zeros(5), np.full((2, 1), 0.5)),
    # indexing
    *[
        case("unindex", r(*np.shape(_X[idx])), _X, idx, static=(2,))
        for idx in [
            1,
            np.s_[1:, None],
            np.s_[..., 0],
            np.s_[::-1, 1],
            np.s_[np.array([1, 1]), np.array([0, 0])],
            np.array([True, False, True]),
            [0, 0, 1],
            (slice(None), [1, 1]),
        ]
    ],
    case("unindex", r(2), _X, np.int64(2), id="unindex-traced-int"),
    case("unindex", r(4, 2), _X, np.array([2, 2, 0, -1]), id="unindex-traced-array"),
    case("unindex", r(3), (r(2), r(3)), 1, static=(2,)),
    case("unindex", r(3), {"w": r(2), "b": r(3)}, "b", static=(2,)),
    case("unindex", [r(2), r(2)], [r(2), r(2), np.arange(3)], slice(1, None), static=(2,)),
    case("add_at", np.zeros(3), np.array([0, 0, 2]), 1.0),
    case("add_at", _X, np.s_[:, 1], r(3), static=(1,)),
    case("add_at", _X, _X > 0, 1.0, id="add_at-traced-mask"),
    case("add_at", _X, np.array([True, False, True]), r(2, 2), static=(1,)),
    case("add_at", np.arange(3), np.int64(1), 0.5, id="add_at-traced-int"),
    case("add_into", np.zeros(3), 1.0, np.array([0, 0, 2])),
    case("add_into", r(2, 3), r(2), np.s_[:, 1], static=(2,)),
    case("add_into", np.zeros(3), 1j, 1, id="add_into-complex"),
    case("set_at", _X, np.array([0, 2]), r(2, 2)),
    case("set_at", _X, np.s_[::2, 1], r(2), static=(1,)),
    case("set_at", _X, _X[:, 0] < 0, 0.0, id="set_at-traced-row-mask"),
    case("set_at", np.arange(3), np.int64(0), 2.5, id="set_at-traced-int"),
    case("owned_copy", _X),
    case("cast_like", r(2, 3), r(2, 3).astype(np.float32)),
    case("cast_like", (r(2), {"w": r(3)}), (r(2), {"w": r(3).astype(np.float32)})),
    case("zero_into", _X, np.s_[:, -1], static=(1,)),
    case("zero_into", _X, np.array([0, 0, 2])),
    case("zero_into", np.arange(4), np.s_[1:3], static=(1,)),
    case("part_copy", _X, np.s_[:, -1], static=(1,)),
    case("part_copy", _X, 1, static=(1,)),
    case("part_copy", np.arange(4.0), np.int64(2), id="part_copy-traced-int"),
    case("zero_at", _X, np.s_[:, -1], static=(1,)),
    case("zero_at", _X, np.array([0, 0, 2])),
    case("zero_at", _X, np.int64(-1), id="zero_at-traced-int"),
    case("zero_at", _X, _X < 0, id="zero_at-traced-mask"),
    case("zero_at", _X, [True, False, True], static=(1,)),
    case("zero_at", np.arange(4), np.s_[1:3], static=(1,)),
    # products
    case("cross", r(4, 3), r(4, 3)),
    case("cross", r(3), r(2, 3)),
    case("cross", r(3, 2), r(3, 2), 0, 0, static=(2, 3)),
    *_product_cases(
        "matmul_adjoint",
        [((2, 3), (3, 4)), ((3,), (3, 4)), ((2, 3), (3,)), ((3,), (3,)), ((2, 1, 2, 3), (3, 3, 2))],
        np.matmul,
    ),
    *_product_cases(
        "dot_adjoint",
        [((), (2, 3)), ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 2)), ((2, 2, 3), (4, 3, 2))],
        np.dot,
    ),
    *_tensordot_cases(),
    *_product_cases("inner_adjoint", [((3,), (3,)), ((2, 3), (4, 3)), ((), (2, 3))], np.inner),
    *_product_cases(
        "kron_adjoint", [((2, 3), (2, 2)), ((3,), (2, 2)), ((2, 1, 2), (3, 2))], np.kron
    ),
    *_einsum_cases(),
    case("multi_dot_tangent", [r(2, 3), r(3, 4), r(4, 2)], [r(2, 3), r(3, 4), r(4, 2)]),
    case("multi_dot_tangent", [r(3), r(3, 4), r(4)], [r(3), r(3, 4), r(4)]),
    case("multi_dot_adjoint", r(), [r(3), r(3, 4), r(4)]),
    case("multi_dot_adjoint", r(4), [r(3), r(3, 4), r(4, 2), r(2, 4)]),
    case("dual_blocks", [r(3), r(3, 4), r(4)], [r(3), r(3, 4), r(4)]),
    case("dual_blocks", [r(2, 3), r(3, 2)], [r(2, 3), r(3, 2)]),
    case("undual_diagonal", [r(2, 6), r(6, 8), r(8, 2)], [r(3), r(3, 4), r(4)]),
    case("undual_corner", [r(4, 6), r(6, 4)], [r(2, 3), r(3, 2)]),
    case("with_slot", (r(2), r(3), None), 1, r(3), static=(1,)),
    case("with_slot", (r(2), r(3), None), 1, r(3), 1, static=(1, 3)),
    case("with_slot", [r(2), r(3)], 0, None, static=(1, 2)),
    case("without_slot", (r(2), r(3), None), 0, static=(1,)),
    case("without_slot", [r(2), None], 1, static=(1,)),
    *[
        case("matrix_power_tangent", a, n, r(*a.shape), static=(1,))
        for a, n in [(_matrix(), 3), (_matrix(), 0), (_matrix(), -2), (_matrix(2), 2)]
    ],
    *[
        case("matrix_power_adjoint", r(*a.shape), a, n, static=(2,))
        for a, n in [(_matrix(), 3), (_matrix(), 0), (_matrix(), -2), (_matrix(2), 2)]
    ],
    # shapes
    case("unconcatenate", r(2, 4), [r(2, 1), r(2, 3)], 1, static=(2,)),
    case("unconcatenate", r(5, 2), (r(2, 2), r(3, 2)), 0, static=(2,)),
    case("unconcatenate", r(2, 4), [r(2, 1), r(2, 3)], -1, static=(2,)),
    case("unconcatenate", r(8), [r(2, 1), r(2, 3)], None, static=(2,)),
    case("unstack", r(2, 3), 0, static=(1,)),
    case("unstack", r(2, 3, 2), -1, static=(1,)),
    case("unstack", r(2, 3, 2), 1, static=(1,)),
    # one array as the sequence of a joining function: one array as its cotangent
    case("unconcatenate", r(6), r(2, 3), 0, static=(2,)),
    case("unconcatenate", r(6), r(2, 3), None, static=(2,)),
    case("unstack", r(3, 2), 1, r(2, 3), static=(1,)),
    case("power_slope_exponent", np.array([0.0, 1.0, 2.5, -1.0])),
    case("thin_svd_factor", r(3, 3), r(3, 3), True, static=(2,)),
    case("thin_svd_factor", r(3, 2), r(3, 2), False, static=(2,)),
    # np.r_[...] / np.c_[...]
    case("concatenate_items", [r(2), r(3)], "r_", None, static=(1, 2)),
    case("concatenate_items", [r(3), 1.5, np.arange(2)], "r_", None, static=(1, 2)),
    case("concatenate_items", [r(3), r(3)], "r_", "0,2", static=(1, 2)),
    case("concatenate_items", [r(2, 2), r(2)], "c_", None, static=(1, 2)),
    case("unconcatenate_items", r(5), [r(2), r(3)], "r_", None, static=(2, 3)),
    case("unconcatenate_items", r(2, 3), [r(3), r(3)], "r_", "0,2", static=(2, 3)),
    case("unconcatenate_items", r(3, 2), [r(3), r(3)], "r_", "1,2,0", static=(2, 3)),
    case("unconcatenate_items", r(2, 3), [r(2, 2), r(2)], "c_", None, static=(2, 3)),
    # control flow
    case("accumulate", None, r(2)),
    case("accumulate", r(2), None),
    case("accumulate", None, None),
    case("accumulate", r(2, 3), r(3)),
    case("accumulate", (r(2), None), (r(2), r(3))),
    case("accumulate", ({"w": r(2)}, [r(1), None]), ({"w": None, "b": r(3)}, [r(1), r(2)])),
    case("zeros_like_tree", r(2, 3)),
    case("zeros_like_tree", 2.0),
    case("zeros_like_tree", (r(2), [np.arange(3), {"k": r(2, 1)}])),
    case("zeros_if_none", None, r(2, 3)),
    case("zeros_if_none", r(2, 3), r(2, 3)),
    case("zeros_if_none", None, (r(2), {"w": np.arange(3)})),
    case("stand_in", r(2, 3)),  # (a small array is itself: see test_runtime for a large one)
    case("stand_in", 2.0),
    # joining and splitting
    *[case("unjoin", getattr(np, h)(arrays), arrays, h, static=(2,)) for arrays, h in _JOIN],
    *[case("rejoin", arrays, arrays, h, static=(2,)) for arrays, h in _JOIN],
    case("rejoin", [None, r(2, 3)], [r(3), r(2, 3)], "vstack", static=(2,)),
    case("unsplit", [r(2, 3), None, r(1, 3)], [r(2, 3), r(2, 3), r(1, 3)], 0, static=(2,)),
    case("unsplit", [r(2, 2), r(2, 1)], [r(2, 2), r(2, 1)], -1, static=(2,)),
    case("unsplit", [None, None], [r(2), r(3)], 0, static=(2,)),
    # copies of elements
    *[
        case("untile", r(*np.tile(a, reps).shape), a, reps, static=(2,))
        for a, reps in [(r(2, 3), 2), (r(3), (2, 1, 1)), (r(3, 2), (2, 1, 2)), (r(2, 3), ())]
    ],
    *[
        case("unrepeat", r(*np.repeat(a, n, axis).shape), a, n, axis, static=(2, 3))
        for a, n, axis in [(r(2, 3), 2, None), (r(2, 3), [2, 1], -2)]
    ],
    case("unrepeat", r(2, 3), r(2, 3), np.array([1, 0, 2]), 1, static=(3,)),
    *[
        case("unpad", r(*np.pad(_MAT, width).shape), _MAT, width, mode, static=(2, 3))
        for width, mode in [
            (1, "constant"),
            (((0, 1), (2, 0)), "empty"),
            (((1, 2), (0, 3)), "edge"),
            (((2, 1), (1, 3)), "reflect"),
            (((3, 1), (2, 5)), "wrap"),
        ]
    ],
    *[
        case("pad_tangent", r(3, 4), width, mode, static=(1, 2))
        for width, mode in [
            (1, "constant"),
            (((1, 2), (0, 3)), "empty"),
            (((2, 1), (1, 3)), "reflect"),
            (((3, 1), (2, 5)), "wrap"),
        ]
    ],
    *[
        case("undiagonal", r(*np.diagonal(a, *args).shape), a, *args, static=(2, 3, 4))
        for a, args in [
            (r(3, 4), (1, 0, 1)),
            (r(3, 4), (-2, 1, 0)),
            (r(2, 3, 4), (-1, 2, 0)),
            (r(2, 3, 4), (0, -1, -2)),
        ]
    ],
    *[
        case("undiag", r(*np.diag(v, k).shape), v, k, static=(2,))
        for v, k in [(r(3), 1), (r(3), 0), (r(3, 4), -1), (r(3, 4), 2)]
    ],
    case("untake", r(3, 4), _MAT, np.array([0, 2, 2, -1]), 1, "raise", static=(3, 4)),
    case("untake", r(3, 4), _MAT, np.array([5, -6, 1]), 0, "wrap", static=(3, 4)),
    case("untake", r(2), _MAT, np.array([17, -2]), None, "clip", static=(3, 4)),
    case("untake", r(2, 2, 4), _MAT, np.array([[0, 1], [1, 1]]), 0, "raise", static=(3, 4)),
    case("untake", r(3), _MAT, np.int64(-3), -1, "raise", static=(3, 4)),
    case("untake", r(2), r(3), [1, 1], None, "raise", static=(2, 3, 4)),
    case("untake_along_axis", r(3, 4), _MAT, np.argsort(_MAT, axis=-1), -1, static=(3,)),
    case(
        "untake_along_axis", r(2, 4), _MAT, np.array([[0, 2, 1, 1], [0, 0, 0, 0]]), 0, static=(3,)
    ),
    case("untake_along_axis", r(3), _MAT, np.array([11, 0, 0]), None, static=(3,)),
    # sequences
    case("undiff", r(3, 3), 1, -1, static=(1, 2)),
    case("undiff", r(1, 4), 2, 0, static=(1, 2)),
    case("undiff", r(4), 0, -1, static=(1, 2)),
    case("uncumulative_sum", r(3, 5), r(3, 4), 1, True, static=(2, 3)),
    case("uncumulative_sum", r(4, 4), r(3, 4), 0, True, static=(2, 3)),
    case("uncumulative_sum", r(5), r(5), None, False, static=(2, 3)),
    case("trapezoid_weights", r(3, 5), None, 0.5, -1, static=(3,)),
    case("trapezoid_weights", r(1), None, 1.0, -1, static=(3,)),
    case("trapezoid_weights", r(3, 5), np.sort(r(3)), 1.0, 0, static=(3,)),
    case("trapezoid_weights", r(3, 5), r(3, 5), 1.0, 1, static=(3,)),
    *[
        case("unconvolve", r(*np.convolve(a, v, mode).shape), a, v, mode, static=(3,))
        for a, v, mode in [
            (r(5), r(3), "full"),
            (r(5), r(3), "same"),
            (r(5), r(3), "valid"),
            (r(4), r(4), "same"),
            (r(6), r(1), "valid"),
        ]
    ],
]
CASES = _ids(CASES)


def _to_jax(value):
    """NumPy arrays and scalars in ``value`` (a pytree) as jax arrays; None and Python values kept."""

    def leaf(v):
        return jax.device_put(v) if isinstance(v, (np.ndarray, np.generic)) else v

    return jax.tree_util.tree_map(leaf, value)


def assert_same(actual, expected, where="result"):
    if expected is None:
        assert actual is None, f"{where}: expected None, got {actual!r}"
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for k in expected:
            assert_same(actual[k], expected[k], f"{where}[{k!r}]")
        return
    if isinstance(expected, (tuple, list)):
        assert type(actual) is type(expected), f"{where}: {type(actual)} vs {type(expected)}"
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{where}[{i}]")
        return
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{where}: shape {actual.shape} vs {expected.shape}"
    assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} vs {expected.dtype}"
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12, err_msg=where)


def _jitted(fn, args, static):
    dynamic = [i for i in range(len(args)) if i not in static]

    def partial(*values):
        full = list(args)
        for i, v in zip(dynamic, values, strict=True):
            full[i] = v
        return fn(*full)

    return jax.jit(partial)(*[args[i] for i in dynamic])


@pytest.mark.parametrize("name, args, static", CASES)
def test_jax_twin_matches_numpy(name, args, static):
    expected = getattr(rt, name)(*copy.deepcopy(args))  # add_into writes into its argument
    jax_args = tuple(a if i in static else _to_jax(a) for i, a in enumerate(args))
    fn = getattr(rtj, name)
    assert_same(fn(*jax_args), expected, f"{name} (eager)")
    assert_same(_jitted(fn, jax_args, static), expected, f"{name} (jit)")


def test_every_helper_has_cases():
    covered = {p.values[0] for p in CASES}
    # The checkpoint schedule's helpers hand back a schedule object, not an array: their
    # JAX twins are driven side by side with the NumPy ones in tests/test_checkpointing.py.
    schedule = {"checkpoints", "store_checkpoint", "restore_checkpoint"}
    missing = set(rt.__all__) - covered - {"foldable", "inverse_permutation"} - schedule
    assert not missing, missing


# --------------------------------------------------------------------------- beyond the table


@pytest.mark.parametrize("name", ["unindex", "zero_at", "add_at", "set_at"])
@pytest.mark.parametrize("form", ["int-slice", "slice-int", "pair"])
def test_traced_integers_inside_tuple_indices(name, form):
    x = r(3, 4)

    def index(i):
        return {
            "int-slice": (i, slice(None)),
            "slice-int": (slice(1, None), i),
            "pair": (i, i + 1),
        }[form]

    def call(mod, x, i):
        idx = index(i)
        if name == "unindex":
            return mod.unindex(2.0 * x[idx] + 1.0, x, idx)
        if name == "zero_at":
            return mod.zero_at(x, idx)
        return getattr(mod, name)(x, idx, -x[idx])

    expected = call(rt, x, 2)
    assert_same(jax.jit(lambda x, i: call(rtj, x, i))(x, 2), expected)
    assert_same(call(rtj, jnp.asarray(x), jnp.asarray(2)), expected)


@pytest.mark.parametrize(
    "idx",
    [
        np.s_[1:],
        np.s_[:-1],
        np.s_[2],
        np.s_[-1],
        np.s_[..., 1:3],
        np.s_[1:4:2, :, -2],
        np.s_[::3],
        np.s_[:, 2, 1:],
        np.s_[1:1],
        np.s_[::-1],
        np.s_[None],
        np.s_[[0, 0, 3]],
    ],
    ids=repr,
)
@pytest.mark.parametrize("name", ["unindex", "add_at"])
def test_slice_adjoints_as_pads_or_scatters(name, idx):
    """Fixed basic indices go through ``lax.pad`` (which XLA fuses), others through a
    scatter: the same values either way, eagerly and under jit, scalars broadcast."""
    x = r(5, 6, 4)
    for part in (r(*x[idx].shape), 1.5):

        def call(mod, x, part=part):
            return mod.unindex(part, x, idx) if name == "unindex" else mod.add_at(x, idx, part)

        expected = call(rt, x)
        assert_same(call(rtj, jnp.asarray(x)), expected)
        assert_same(jax.jit(lambda x: call(rtj, x))(x), expected)


def test_scans_are_exact_at_zeros_under_jit():
    """``cumprod_tangent``/``uncumprod`` pick their linear or exact form at run time."""
    a = _SCAN.copy()
    tangent = jax.jit(lambda da, a: rtj.cumprod_tangent(da, a, 1))
    adjoint = jax.jit(lambda g, a: rtj.uncumprod(g, a, 1))
    for zero_at in [None, (0, 0), (2, 3)]:
        if zero_at is not None:
            a[zero_at] = 0.0
        da = r(3, 4)
        assert_same(tangent(da, a), rt.cumprod_tangent(da, a, 1))
        assert_same(adjoint(da, a), rt.uncumprod(da, a, 1))
        assert np.all(np.isfinite(tangent(da, a)))


def test_unrepeat_with_traced_repeats():
    g, a, repeats = r(2, 5), r(2, 3), np.array([2, 0, 3])
    out = jax.jit(lambda g, a, n: rtj.unrepeat(g, a, n, 1))(g, a, repeats)
    assert_same(out, rt.unrepeat(g, a, repeats, 1))


def test_trapezoid_weights_with_traced_spacing():
    y = r(2, 4)
    out = jax.jit(lambda y, dx: rtj.trapezoid_weights(y, None, dx, -1))(y, 0.25)
    assert_same(out, rt.trapezoid_weights(y, None, 0.25, -1))


def test_helpers_keep_float32():
    """float32 stays float32, also where the NumPy twin promotes to float64."""
    x = jnp.asarray(r(3, 4), dtype=jnp.float32)
    assert rtj.unbroadcast(x, jnp.float32(1.0)).dtype == jnp.float32
    assert rtj.tie_shares(x, jnp.max(x)).dtype == jnp.float32
    assert rtj.greater_share(x, 1.0).dtype == jnp.float32
    assert rtj.zero_at(x, 0).dtype == jnp.float32
    assert rtj.zero_at(x, x < 0).dtype == jnp.float32
    assert rtj.unindex(x[0], x, 0).dtype == jnp.float32
    assert rtj.untake(x[0], x, jnp.arange(4), None).dtype == jnp.float32
    assert rtj.unconvolve(x[0], x[0], x[1, :2], "same").dtype == jnp.float32
    assert rtj.trapezoid_weights(x, x[0], 1.0, -1).dtype == jnp.float32
    assert rtj.einsum_adjoint(x[:, 0], "ii->i", [x[:, :3]], 0).dtype == jnp.float32
    assert rtj.zeros_like_tree((x, jnp.arange(2)))[1].dtype == jnp.float64


def test_helpers_return_jax_arrays_and_leave_inputs_alone():
    x = np.asarray(r(3, 2))
    x0 = x.copy()
    for out in [
        rtj.unindex(x[0], x, 0),
        rtj.add_at(x, 0, 1.0),
        rtj.set_at(x, 0, 1.0),
        rtj.zero_at(x, 0),
        rtj.unreduce(np.sum(x, axis=0), x, 0),
    ]:
        assert isinstance(out, jax.Array)
    assert np.all(x == x0)
