"""A small least-recently-used map: the one cache shape the studio uses everywhere."""

from __future__ import annotations

from collections import OrderedDict


class LRU:
    def __init__(self, size: int):
        self.size, self.items = size, OrderedDict()

    def __contains__(self, key) -> bool:
        return key in self.items

    def get(self, key):
        if key in self.items:
            self.items.move_to_end(key)
        return self.items.get(key)

    def put(self, key, value):
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return value

    def clear(self):
        self.items.clear()
