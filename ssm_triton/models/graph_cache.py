"""What the LM's prefill and decode graphs share: captured CUDA graphs by key, bounded, dropped together."""
from __future__ import annotations

from collections import OrderedDict


class GraphCache:
    """Captured graphs of one model by key: at most ``capacity`` (each holds its own memory pool; the least
    recently used is dropped first), all dropped when the model's weights fingerprint changes (a graph reads
    the tensors it was captured with). A copied or unpickled model starts with none."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self.graphs: OrderedDict = OrderedDict()
        self.weights = None

    def __deepcopy__(self, memo):
        return type(self)(self.capacity)

    def __getstate__(self):
        return {"capacity": self.capacity}

    def __setstate__(self, state):
        self.__init__(state["capacity"])

    def clear(self) -> None:
        """Drops every graph."""
        self.graphs.clear()
        self.weights = None

    def graph(self, weights, key, make):
        """The graph kept under ``key`` for these ``weights``; on a miss ``make() -> (graph, key)`` captures one
        (the key it returns is the one it is kept under: a capture may complete what the key describes)."""
        if weights != self.weights:
            self.clear()
            self.weights = weights
        found = self.graphs.get(key)
        if found is not None:
            self.graphs.move_to_end(key)
            return found
        while len(self.graphs) >= self.capacity:
            self.graphs.popitem(last=False)
        found, key = make()
        self.graphs[key] = found
        return found
