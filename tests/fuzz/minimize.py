"""Shrink a failing program while it keeps failing the same way.

Greedy delta debugging on the module's syntax tree: delete a statement, a
helper function, or a whole ``if``/``for``/``while`` (or keep only its body),
replace an expression by one of its operands or by a constant, drop a function
parameter's use. A candidate counts only if it is still well defined
(``check.prepare`` accepts it) and the same check on the same backend still
ends in the same class (``wrong``, or ``crash`` with the same exception and
place, or the same refusal). A candidate whose ``while`` loop lost its bound
(the counter's ``k = k + 1``, or the ``k < limit`` test or ``if k >= limit:
break`` that ends it) is never run: it would spin for ever, and neither the
budget nor a signal can stop a loop that XLA is running.
"""

from __future__ import annotations

import ast
import copy
import time
from collections.abc import Callable, Iterator

from tests.fuzz import check as chk
from tests.fuzz.generator import Program


def _bodies(tree: ast.AST) -> Iterator[list]:
    for node in ast.walk(tree):
        for attr in ("body", "orelse"):
            body = getattr(node, attr, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                yield body


def _statement_edits(tree: ast.Module) -> Iterator[Callable[[ast.Module], None]]:
    """Edits by position, replayed on a copy of ``tree``: (walk index of the body, stmt index)."""
    bodies = list(_bodies(tree))
    for b, body in enumerate(bodies):
        for s in range(len(body) - 1, -1, -1):
            stmt = body[s]
            if isinstance(stmt, ast.Return) and isinstance(getattr(stmt, "value", None), ast.AST):
                continue
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(stmt, ast.FunctionDef) and stmt.name == "f":
                continue

            def delete(t, b=b, s=s):
                body = list(_bodies(t))[b]
                del body[s]
                if not body:
                    body.append(ast.Pass())

            yield delete
            if isinstance(stmt, (ast.If, ast.For, ast.While)):
                for attr in ("body", "orelse"):
                    if getattr(stmt, attr):

                        def inline(t, b=b, s=s, attr=attr):
                            body = list(_bodies(t))[b]
                            body[s : s + 1] = getattr(body[s], attr)

                        yield inline


_CHILD_FIELDS = (ast.Call, ast.BinOp, ast.UnaryOp, ast.Subscript, ast.BoolOp, ast.Compare)


def _expression_edits(tree: ast.Module) -> Iterator[Callable[[ast.Module], None]]:
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.expr)]
    for k, node in enumerate(nodes):
        if not isinstance(node, _CHILD_FIELDS) or isinstance(getattr(node, "ctx", None), ast.Store):
            continue
        children = _children_of(node)
        for c in range(len(children)):

            def replace(t, k=k, c=c):
                target = [n for n in ast.walk(t) if isinstance(n, ast.expr)][k]
                new = _children_of(target)[c]
                _swap(t, target, new)

            yield replace
        if not isinstance(node, ast.Compare):

            def constant(t, k=k):
                target = [n for n in ast.walk(t) if isinstance(n, ast.expr)][k]
                _swap(t, target, ast.Constant(0.5))

            yield constant


def _children_of(node: ast.expr) -> list:
    if isinstance(node, ast.Call):
        children = [a for a in node.args if not isinstance(a, ast.Constant)]
        children += [a for a in node.args if isinstance(a, (ast.List, ast.Tuple))]
        return [c for a in children for c in ([a] + getattr(a, "elts", []))]
    if isinstance(node, ast.BinOp):
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp):
        return [node.operand]
    if isinstance(node, ast.Subscript):
        return [node.value]
    if isinstance(node, ast.BoolOp):
        return list(node.values)
    return [ast.Constant(True), ast.Constant(False)]


def _swap(tree: ast.AST, old: ast.expr, new: ast.expr) -> None:
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return


def _counts_up(statement: ast.stmt) -> str | None:
    """``k`` when ``statement`` is ``k = k + 1``: the generator's loop counter."""
    if (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and isinstance(statement.targets[0], ast.Name)
        and isinstance(statement.value, ast.BinOp)
        and isinstance(statement.value.op, ast.Add)
        and isinstance(statement.value.left, ast.Name)
        and statement.value.left.id == statement.targets[0].id
        and isinstance(statement.value.right, ast.Constant)
        and statement.value.right.value == 1
    ):
        return statement.targets[0].id
    return None


def _caps(test: ast.expr, k: str) -> bool:
    """Whether ``test`` is, or is a conjunction holding, ``k < limit``."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return any(_caps(value, k) for value in test.values)
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == k
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Lt)
        and isinstance(test.comparators[0], ast.Constant)
    )


def _breaks_at_limit(statement: ast.stmt, k: str) -> bool:
    """Whether ``statement`` is ``if k >= limit: break``."""
    return (
        isinstance(statement, ast.If)
        and isinstance(statement.test, ast.Compare)
        and isinstance(statement.test.left, ast.Name)
        and statement.test.left.id == k
        and isinstance(statement.test.ops[0], ast.GtE)
        and isinstance(statement.test.comparators[0], ast.Constant)
        and len(statement.body) == 1
        and isinstance(statement.body[0], ast.Break)
    )


def loops_are_bounded(tree: ast.AST) -> bool:
    """Whether every ``while`` in ``tree`` still counts up to its limit, as generated."""
    for loop in ast.walk(tree):
        if not isinstance(loop, ast.While):
            continue
        k = _counts_up(loop.body[0])
        if k is None:
            return False
        if not (_caps(loop.test, k) or any(_breaks_at_limit(s, k) for s in loop.body[1:2])):
            return False
    return True


def minimize(
    program: Program,
    outcome: chk.Outcome,
    directory: str,
    budget_s: float = 120.0,
    max_tries: int = 400,
    oracle: str = "autograd",
) -> tuple[str, int]:
    """The smallest source found that still fails like ``outcome``, and the tries it took."""
    start = time.monotonic()
    tries = 0

    def still_fails(source: str) -> bool:
        nonlocal tries
        tries += 1
        candidate = Program(program.seed, source, program.args, program.arg_kinds)
        try:
            prep = chk.prepare(
                candidate, directory, oracle if outcome.status == "wrong" else "none"
            )
        except chk.Rejected:
            return False
        except Exception:
            return False
        try:
            got = chk.run_check(outcome.check, prep, outcome.backend)
        finally:
            chk.unload(prep.modules)
        return got is not None and got.status == outcome.status and got.key == outcome.key

    best = ast.parse(program.source)

    def out_of_budget() -> bool:
        return tries >= max_tries or time.monotonic() - start > budget_s

    changed = True
    while changed and not out_of_budget():
        changed = False
        for edits in (_statement_edits, _expression_edits):
            k = 0
            while not out_of_budget():
                pending = list(edits(best))
                if k >= len(pending):
                    break
                candidate = copy.deepcopy(best)
                try:
                    list(edits(candidate))[k](candidate)
                    source = ast.unparse(ast.fix_missing_locations(candidate))
                except Exception:
                    k += 1
                    continue
                if not loops_are_bounded(candidate):
                    k += 1
                    continue
                if still_fails(source):
                    best = ast.parse(source)
                    changed = True
                else:
                    k += 1
    return ast.unparse(best) + "\n", tries
