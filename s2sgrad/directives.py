"""Directives: ``# s2sgrad: ...`` comments that steer how a statement is differentiated.

Source-to-source tools take such hints in the source, next to the code they are about
(Tapenade's ``$AD`` pragmas). s2sgrad reads one so far, on a ``for`` or ``while`` loop,
as the comment of its header line or a comment line right above it::

    for t in range(n_steps):  # s2sgrad: checkpoint(snapshots=20)

Its reverse sweep then keeps at most 20 states of the loop (binomial checkpointing,
``transforms.checkpointing``). A comment that starts ``s2sgrad:`` but is not a directive
this version knows, or that is on no loop, is an error, not a comment: a misspelt or
misplaced directive would otherwise be ignored without a word.
"""

from __future__ import annotations

import re

_DIRECTIVE = re.compile(r"#\s*s2sgrad\s*:\s*(?P<text>.*?)\s*$")
_CHECKPOINT = re.compile(r"checkpoint\s*\(\s*snapshots\s*=\s*(?P<n>[0-9_]+)\s*\)")

HINT = (
    "write `# s2sgrad: checkpoint(snapshots=N)`, N >= 1, on the header line of a for or "
    "while loop, or on the line right above it"
)


class DirectiveError(ValueError):
    """A ``# s2sgrad:`` comment that is not a directive s2sgrad knows (the frontend adds
    where it is)."""


def directive_text(comment: str) -> str | None:
    """The text after ``# s2sgrad:`` of a comment, or None for an ordinary comment."""
    match = _DIRECTIVE.match(comment.strip())
    return match.group("text") if match else None


def checkpoint_snapshots(comment: str) -> int | None:
    """The ``N`` of a ``# s2sgrad: checkpoint(snapshots=N)`` comment; None for an
    ordinary comment. Raises ``DirectiveError`` for any other ``# s2sgrad:`` comment."""
    text = directive_text(comment)
    if text is None:
        return None
    match = _CHECKPOINT.fullmatch(text)
    if match is None:
        raise DirectiveError(f"unknown s2sgrad directive `{text}`")
    n = int(match.group("n"))
    if n < 1:
        raise DirectiveError(f"checkpoint(snapshots={n}): a checkpointed loop needs a snapshot")
    return n
