"""What the core library needs from Pythons newer than the oldest it runs on (3.9).

The core runs in the image tool on CPython 3.9 to 3.13 (``[oci].interpreter_constraints``), so
it may not use ``zip(strict=True)`` (3.10). ``X | Y`` is fine in annotations, which
``from __future__ import annotations`` leaves unevaluated, but not where Python evaluates it:
``isinstance`` (use a tuple), type aliases and pydantic model fields (use ``Optional``/``Union``).
tests/test_guard_rails.py checks all three.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import zip_longest
from typing import Any, TypeVar, overload

__all__ = ["zip_strict"]

_A = TypeVar("_A")
_B = TypeVar("_B")
_C = TypeVar("_C")

_MISSING = object()


@overload
def zip_strict(a: Iterable[_A], b: Iterable[_B], /) -> Iterator[tuple[_A, _B]]: ...


@overload
def zip_strict(
    a: Iterable[_A], b: Iterable[_B], c: Iterable[_C], /
) -> Iterator[tuple[_A, _B, _C]]: ...


def zip_strict(*iterables: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
    """``zip(*iterables, strict=True)``: ValueError when one ends before the others."""
    for items in zip_longest(*iterables, fillvalue=_MISSING):
        if any(item is _MISSING for item in items):
            raise ValueError("zip_strict() arguments have different lengths")
        yield items
