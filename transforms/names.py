"""Fresh, readable, collision-free names for generated code.

Hygiene matters in a source-to-source tool: a user variable called ``dx`` or
``g`` must never be captured by a generated name. Every generator knows every
name the user's function (and the generated module) already uses.
"""

from __future__ import annotations


class FreshNames:
    """Hands out names that do not clash with ``taken`` nor with each other."""

    def __init__(self, taken: set[str] | frozenset[str] = frozenset()):
        self.taken = set(taken)
        self._temp_counter = 0
        # Per base, the suffix to try first: every smaller one is taken (names are never
        # given back), so a function with thousands of `dx_k` does not rescan from 1.
        self._next_suffix: dict[str, int] = {}

    def reserve(self, *names: str) -> None:
        self.taken.update(names)

    def fresh(self, base: str) -> str:
        """``base`` itself if free, else ``base_1``, ``base_2``..."""
        if base not in self.taken:
            self.taken.add(base)
            return base
        k = self._next_suffix.get(base, 1)
        while f"{base}_{k}" in self.taken:
            k += 1
        self._next_suffix[base] = k + 1
        name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def temp(self) -> str:
        """A compiler temporary: t1, t2, ... (skipping any the user already has)."""
        while True:
            self._temp_counter += 1
            name = f"t{self._temp_counter}"
            if name not in self.taken:
                self.taken.add(name)
                return name
