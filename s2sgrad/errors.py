"""Errors that point at the user's source.

Every error s2sgrad raises while compiling a derivative names the file, line
and column of the construct it refuses, shows that line with a caret under
the offending column, and says what the user can do about it. A compiler
error that only says "unsupported" sends the user on a hunt; one that shows
the line and a way out does not.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceLocation:
    """Where a construct came from: file, 1-based line, 0-based column, and that line's text."""

    file: str
    line: int
    col: int
    text: str = ""
    #: Derivative code read back (higher order): the user's line it was generated from,
    #: as its ``# line N: ...`` comment gives it (line and text; no file, no column).
    origin: SourceLocation | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col + 1}"


class S2SGradError(Exception):
    """Base class of every error s2sgrad raises about the user's code or call."""

    def __init__(self, message: str, loc: SourceLocation | None = None, hint: str | None = None):
        self.message = message
        self.loc = loc
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.loc is not None:
            parts.append(f"{self.loc}: {self.message}")
            if self.loc.text:
                stripped = self.loc.text.rstrip("\n")
                parts.append(f"    {stripped}")
                parts.append("    " + " " * self.loc.col + "^")
        else:
            parts.append(self.message)
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)


class UnsupportedSyntaxError(S2SGradError):
    """The function uses Python that s2sgrad cannot differentiate through (yet)."""


class NoDerivativeRuleError(S2SGradError):
    """An active value flows into a function that has no registered derivative rule."""


class NonDifferentiableError(S2SGradError):
    """An active value flows into an operation whose derivative is not defined."""


class SourceUnavailableError(S2SGradError):
    """The function's source cannot be read (lambda in a REPL, builtin, C extension)."""


class UsageError(S2SGradError):
    """The API was called wrongly: bad wrt, non-scalar output given to grad, and so on."""


class NeedsConcreteValueError(S2SGradError):
    """Under ``backend="jax"`` the derivative runs jitted, and a line needs a value JAX only
    knows at run time (``int(x)``, a boolean mask, a shape computed from data)."""


class HigherOrderError(UsageError):
    """A derivative s2sgrad produced is being differentiated in a way that does not compose
    yet: a ``vjp_fn``, or s2sgrad's transformations called inside (``grad(f)`` and
    ``value_and_grad(f)`` compose, in either mode, through loops)."""


class StaleSourceError(SourceUnavailableError):
    """The function's source file was edited after the function was defined, so the text
    s2sgrad would compile is not the code that runs."""


class RandomDrawError(UnsupportedSyntaxError):
    """A differentiated function draws random numbers: its derivative code reruns parts of
    it (forward mode once per input element, reverse mode in the backward sweep and in
    ``vjp_fn``), and each rerun would draw again."""


class LoopBoundExceeded(RuntimeError):
    """A recorded ``while`` loop (or a range with a traced length) ran past ``max_steps``
    (``backend="jax"``, reverse mode: the backward sweep replays a tape of that many rows).
    A ``RuntimeError``, not an ``S2SGradError``: the program is fine, the bound too small."""
