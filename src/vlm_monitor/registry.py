"""Named plug-ins of one kind (analyzers, flow node types, VLM and realtime provider kinds),
all registered the same way: ``@REGISTRY.register("name")`` on the class.

A registry is filled at import time by the modules that define its entries, and only read
afterwards, so reads need no lock.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(LookupError):
    """A name no entry is registered under; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        super().__init__(f"unknown {kind} {name!r} (known: {', '.join(known) or 'none'})")
        self.kind, self.name, self.known = kind, name, known


class PluginError(Exception):
    """A plug-in that cannot be built from its configuration. Raised while the server (or a
    worker) starts, it stops start-up: running without a plug-in the configuration names
    would fail later, one request or clip at a time, far from the cause."""

    def __init__(self, kind: str, name: str, reason: str) -> None:
        super().__init__(f"{kind} {name!r} cannot be built: {reason}")
        self.kind, self.name, self.reason = kind, name, reason


class Registry(Generic[T]):
    """``kind`` names the entries in messages, e.g. ``"analyzer"``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator: registers the decorated entry under ``name`` and returns it as is.
        Two entries may not share a name (a plug-in would silently replace a built-in)."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> ItemsView[str, T]:
        return self._entries.items()

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
