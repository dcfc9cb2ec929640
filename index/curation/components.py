"""Connected components over links between items (union-find with path halving). Duplicate clusters and
leakage-free split groups are both components: of confirmed pairs, and of shared clusters or artists."""
from __future__ import annotations

from collections.abc import Hashable


class Components:
    def __init__(self) -> None:
        self.parent: dict[Hashable, Hashable] = {}

    def root(self, x: Hashable) -> Hashable:
        """The representative of `x`'s component (registering `x` on first sight)."""
        while self.parent.setdefault(x, x) != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def link(self, a: Hashable, b: Hashable) -> None:
        self.parent[self.root(a)] = self.root(b)

    def groups(self) -> list[list]:
        """Every component's members, in the order they were first seen."""
        members: dict[Hashable, list] = {}
        for x in list(self.parent):
            members.setdefault(self.root(x), []).append(x)
        return list(members.values())
