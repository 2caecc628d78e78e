"""The `# <-` marker that test programs put on the line an error must point at."""

from __future__ import annotations

import inspect
from collections.abc import Callable


def marked_line(fn: Callable) -> int:
    """The file line of ``fn``'s source that carries the `# <-` marker."""
    lines, start = inspect.getsourcelines(fn)
    for offset, text in enumerate(lines):
        if "# <-" in text:
            return start + offset
    raise AssertionError(f"no marker in {fn.__name__}")
