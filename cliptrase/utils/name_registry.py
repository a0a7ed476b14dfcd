"""A minimal name -> object registry with discovery and clear errors.

mmengine's ``Registry`` is used for everything mmseg builds from config (datasets, transforms, segmentors,
metrics; see ``cliptrase.registry``). This one is for plain functions picked by name inside the method
(attention rules, DBSCAN backends, methods), where ``models/`` and ``method/`` must not import mmseg.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Registry of named objects; unknown names raise ``KeyError`` listing the valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; registering a name twice is an error."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str | T) -> T:
        """Return the object registered as ``name``; a non-string is passed through unchanged."""
        if not isinstance(name, str):
            return name
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self._items))}") from None

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
