"""How a library says what is wrong: the error it raises and the one sentence for a damaged file (owned here,
below every module of index.core, so that any of them can say it)."""
from __future__ import annotations

from pathlib import Path


class LibraryError(RuntimeError):
    """A library that cannot be used as asked; the message says why and what to do."""


def first_line(reason: object) -> str:
    """An error or reason as one short line: its first line, or its type when it says nothing."""
    text = str(reason).strip()
    return text.splitlines()[0][:160] if text else type(reason).__name__


def damage_sentence(root: Path, name: str, reason: object, effect: str = "so this library cannot be used") -> str:
    """One sentence for a damaged library file: which, why, what it means and what to run."""
    return (f"{name} in {root} is damaged ({first_line(reason)}), {effect}. Run `tunelens repair --library {root}`: "
            "it rebuilds what can be derived and embeds again only tracks whose vectors are lost")
