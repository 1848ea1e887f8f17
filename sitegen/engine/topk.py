"""The exact top k of every column over blocks of rows: what mining keeps of the probe set."""

from __future__ import annotations

import numpy as np


class RunningTopK:
    """The exact top k of every column over blocks of rows, ties broken by row order.

    Memory holds k rows per column whatever the number of rows seen, so mining
    a probe set of any size costs the same (neurons x k).  Blocks may come in
    any order (the row numbers decide ties), so shards can be merged exactly.
    """

    def __init__(self, columns: int, k: int):
        self.k = k
        self.values = np.full((0, columns), -np.inf, dtype=np.float32)
        self.rows = np.zeros((0, columns), dtype=np.int64)
        self.positions = np.zeros((0, columns), dtype=np.int64)

    def update(self, values: np.ndarray, positions: np.ndarray, rows: np.ndarray) -> None:
        """Add a block: values and positions [n, C] of rows numbered ``rows`` ([n], or [n, C] per column)."""
        rows = rows if rows.ndim == 2 else np.broadcast_to(rows[:, None], values.shape)
        all_values = np.concatenate([self.values, values.astype(np.float32)])
        all_rows = np.concatenate([self.rows, rows])
        all_positions = np.concatenate([self.positions, positions])
        order = np.lexsort((all_rows, -all_values), axis=0)[:self.k]
        self.values = np.take_along_axis(all_values, order, axis=0)
        self.rows = np.take_along_axis(all_rows, order, axis=0)
        self.positions = np.take_along_axis(all_positions, order, axis=0)

    def merge(self, other: RunningTopK) -> None:
        """Take in another shard's top k (of other rows): the result is the top k of both."""
        self.update(other.values, other.positions, other.rows)

