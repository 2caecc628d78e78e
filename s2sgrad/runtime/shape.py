"""Helpers of the rearranging rules (``rules/shape.py``).

Written once for every backend: see ``s2sgrad/runtime/__init__.py``.
"""

from __future__ import annotations

from typing import Any


def negated_shift(shift: Any) -> Any:
    """The shift that undoes ``roll(x, shift)``: an int, or a tuple of ints, stays static."""
    if isinstance(shift, (tuple, list)):
        return tuple(-s for s in shift)
    return -shift
