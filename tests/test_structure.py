"""The structure pass: same behaviour as the user's function, in the shape the transforms need.

Two properties over the whole control-flow corpus (``tests/programs/control_flow.py``)
and a few edge cases defined here:

* executing the lowered source gives what the function gives, on several inputs;
* the structured IR has counted loops over ``range`` names, no jumps but one
  ``if broke: break`` at the end of a loop that can stop early, a single final
  return, and every ``if`` testing a fresh name assigned just before it.
"""

from __future__ import annotations

import numpy as np
import pytest
from s2sgrad.transforms import dataflow
from s2sgrad.transforms.normalize import normalize
from s2sgrad.transforms.structure import structure

from s2sgrad import ir, pipeline
from s2sgrad.errors import UnsupportedSyntaxError
from s2sgrad.frontend import parse_function
from tests.oracles import assert_close
from tests.programs import control_flow as cf
from tests.programs import straight_line

# --------------------------------------------------------------------------- edge cases


def falls_off_the_end(x):
    if x > 0.0:
        return x * 2.0


def dead_code_after_return(x):
    for i in range(3):
        x = x + i
        continue
        x = x * 100.0  # never runs
    return x
    x = -x


def loop_over_pairs(x):
    s = 0.0
    for a, (b, c) in [(x, (1.0, 2.0)), (2.0 * x, (3.0, x))]:
        s = s + a * b - c
    return s


def zip_with_range_and_pattern_name(x, y):
    s = 0.0
    for pair in zip(range(1, 10), x, y):
        s = s + pair[0] * pair[1] + pair[2]
    return s


def enumerate_start_runtime(x, k):
    s = 0.0
    for i, v in enumerate(x, k):
        s = s + i * v
    return s + i


def unconditional_return_in_loop(x):
    for v in x:
        return v * 3.0
    return -1.0


def continue_in_while(x):
    n = 0
    s = 0.0
    while n < 6:
        n += 1
        if n % 2 == 0:
            continue
        s = s + x * n
    return s


def constant_test(x):
    if True:
        x = x + 1.0
    while False:
        x = x * 2.0
    return x


def loop_variable_after_loop(x, n):
    i = -1
    for i in range(n):  # noqa: B007 - read after the loop
        x = x * 1.5
    for j, v in enumerate([x, 2.0]):  # noqa: B007
        x = x + v
    return x + i + j


result = 10.0  # a global named like the variable the pass gives early returns
cond = 0.5


def reads_globals_named_like_generated_locals(x):
    for i in range(3):
        if x > cond:
            return x * result + i
        x = x * 2.0
    return x


EDGE_CASES = {
    reads_globals_named_like_generated_locals: [[0.1], [0.6]],
    falls_off_the_end: [[1.5], [-1.5]],
    dead_code_after_return: [[0.5]],
    loop_over_pairs: [[0.7]],
    zip_with_range_and_pattern_name: [[np.arange(4.0), np.ones(6)]],
    enumerate_start_runtime: [[np.array([0.5, 1.5, -2.0]), 3], [np.array([1.0]), -2]],
    unconditional_return_in_loop: [[np.array([0.3, 0.4])], [np.zeros(0)]],
    continue_in_while: [[0.7]],
    constant_test: [[0.2]],
    loop_variable_after_loop: [[0.3, 4], [0.3, 1]],
}


def _cases():
    for name in cf.ARGS:
        fn = getattr(cf, name)
        yield pytest.param(fn, [cf.make_args(name, seed) for seed in range(3)], id=name)
    for fn, arg_lists in EDGE_CASES.items():
        yield pytest.param(fn, arg_lists, id=fn.__name__)


CASES = list(_cases())


def _copy(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


@pytest.mark.parametrize("fn,arg_lists", CASES)
def test_lowered_source_behaves_like_the_function(fn, arg_lists):
    namespace = dict(fn.__globals__)
    exec(compile(pipeline.lowered_source(fn), f"<lowered {fn.__name__}>", "exec"), namespace)
    lowered = namespace[fn.__name__]
    for args in arg_lists:
        want = fn(*_copy(args))
        got = lowered(*_copy(args))
        if want is None:
            assert got is None
        else:
            assert_close(got, want, rtol=1e-12, atol=0.0, what=fn.__name__)


# --------------------------------------------------------------------------- invariants


_blocks = ir.blocks


def _is_loop_exit(stmt):
    return (
        isinstance(stmt, ir.If)
        and isinstance(stmt.test, ir.Name)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], ir.Break)
        and not stmt.orelse
    )


def check_structured(fn: ir.FunctionDef, user_names: set[str]) -> None:
    """Assert the guarantees of ``transforms.structure`` on its output ``fn``."""
    stmts = list(ir.walk_stmts(fn.body))
    assert all(getattr(s, "loc", None) is not None for s in stmts), "a statement lost its loc"
    assignments = [t.id for s in stmts if isinstance(s, ir.Assign) for t in s.targets]

    # (c) exactly one return, the last statement.
    returns = [s for s in stmts if isinstance(s, ir.Return)]
    assert len(returns) == 1 and fn.body[-1] is returns[0]

    # (b) no continue; a break only as the last statement of a loop body, as `if flag: break`.
    assert not any(isinstance(s, ir.Continue) for s in stmts)
    exits = {id(loop.body[-1]) for loop in stmts if isinstance(loop, (ir.For, ir.While))}
    for s in stmts:
        if _is_loop_exit(s):
            assert id(s) in exits, "`if flag: break` not at the end of a loop body"
    breaks = [s for s in stmts if isinstance(s, ir.Break)]
    assert len(breaks) == len([s for s in stmts if _is_loop_exit(s)])

    for block in _blocks(fn.body):
        for k, stmt in enumerate(block):
            before = block[k - 1] if k else None
            # (a) every for: plain name target over a name bound just before to range(...).
            if isinstance(stmt, ir.For):
                assert isinstance(stmt.target, ir.Name)
                assert isinstance(stmt.iter, ir.Name)
                assert isinstance(before, ir.Assign) and before.targets == (stmt.iter,)
                assert isinstance(before.value, ir.Call) and before.value.fn.value is range
                assert stmt.iter.id not in fn.temps
            # (d) every if tests a constant, or a fresh name assigned just before it.
            if isinstance(stmt, ir.If) and not _is_loop_exit(stmt):
                if isinstance(stmt.test, ir.Const):
                    continue
                name = stmt.test.id
                assert isinstance(before, ir.Assign) and before.targets == (stmt.test,), name
                assert name not in user_names and assignments.count(name) == 1, name


def _names(fn):
    return dataflow.all_local_names(normalize(parse_function(fn)))


@pytest.mark.parametrize("fn,arg_lists", CASES)
def test_structured_ir_keeps_its_promises(fn, arg_lists):
    check_structured(pipeline.lower(fn), _names(fn))


@pytest.mark.parametrize("name", list(straight_line.SHAPES))
def test_straight_line_code_is_left_alone(name):
    normalized = normalize(parse_function(getattr(straight_line, name)))
    assert structure(normalized) == normalized


# --------------------------------------------------------------------------- readable output


def _code(fn):
    """The lowered function's code lines, without comments."""
    text = pipeline.lowered_source(fn)
    body = text.split("def ", 1)[1].split("__s2sgrad_entry__")[0]
    return [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_a_range_loop_keeps_the_users_loop_variable():
    code = _code(cf.horner)
    assert "i_range = range(len(coeffs))" in code
    assert "for i in i_range:" in code


def test_enumerate_counts_with_the_users_index():
    code = _code(cf.enumerate_weighted_rows)
    assert "for i in i_range:" in code and "row = X[i]" in code
    code = _code(cf.enumerate_with_start)
    assert "k = idx + 1" in code and "v = x[idx]" in code


def test_zip_loops_to_the_shortest_sequence():
    code = _code(cf.zip_uneven)
    assert "idx_range = range(min(len(a), len(b), len(c)))" in code


def test_flags_only_where_needed():
    """An early return that an else can absorb needs no flag; one inside a loop does."""
    code = _code(cf.elif_returns)
    assert not any("returned" in ln or "go" in ln.split() for ln in code)
    assert code[-1] == "return result"
    code = _code(cf.return_inside_loop)
    assert "returned = True" in code and "broke = True" in code and "if broke:" in code
    assert "go = not returned" in code


def test_a_trailing_continue_becomes_nothing():
    code = _code(cf.continue_then_rest)
    assert not any("skip" in ln for ln in code)


def test_a_sequence_rebound_in_the_loop_is_copied():
    code = _code(cf.sequence_rebound_in_loop)
    assert code.index("seq = x") < code.index("idx_range = range(len(seq))")
    assert "v = seq[idx]" in code


def loops_over_reversed(x):
    s = 0.0
    for v in reversed(x):
        s = s * 0.5 + v
    return s


def len_is_a_local(x):
    len = 3
    s = 0.0
    for v in x:
        s = s + v * len
    return s


@pytest.mark.parametrize(
    "fn,message",
    [
        (loops_over_reversed, "looping over reversed"),
        (len_is_a_local, "hides the builtin len"),
    ],
)
def test_loops_it_cannot_index_are_refused_with_the_line(fn, message):
    with pytest.raises(UnsupportedSyntaxError, match=message) as info:
        pipeline.lower(fn)
    assert info.value.loc is not None and "for v in" in info.value.loc.text
