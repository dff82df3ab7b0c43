"""Live training runs and endpoint fleets of this process, keyed by account, region and name."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")
Key = tuple[str, str, str]  # (account id, region, resource name)


class Registry(Generic[T]):
    def __init__(self) -> None:
        self._items: dict[Key, T] = {}
        self._lock = threading.Lock()

    def put(self, key: Key, item: T) -> None:
        with self._lock:
            self._items[key] = item

    def get(self, key: Key) -> T | None:
        with self._lock:
            return self._items.get(key)

    def pop(self, key: Key) -> T | None:
        with self._lock:
            return self._items.pop(key, None)

    def items(self) -> list[tuple[Key, T]]:
        with self._lock:
            return list(self._items.items())

    def pop_where(self, account_id: str | None = None, region: str | None = None) -> list[T]:
        """Remove and return the items of one account and region (all when both are None)."""
        with self._lock:
            keys = [
                key
                for key in self._items
                if account_id is None or (key[0], key[1]) == (account_id, region)
            ]
            return [self._items.pop(key) for key in keys]
