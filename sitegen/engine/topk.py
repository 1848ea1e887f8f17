"""The exact top k of every column over blocks of rows: what mining keeps of the probe set."""

from __future__ import annotations

import numpy as np


class RunningTopK:
    """The exact top k of every column over blocks of rows, ties broken by row order.

    Memory holds k rows per column whatever the number of rows seen, so mining
    a probe set of any size costs the same (neurons x k).  Blocks may come in
    any order (the row numbers decide ties), so shards can be merged exactly.
    """

    def __init__(self, columns: int, k: int, groups: np.ndarray | None = None, cap: int | None = None):
        """``groups`` ([rows], with ``cap``): each row's group (a probe view's photo), of which at most ``cap``
        rows are kept per column: the top k are then the best rows such that no group has more than ``cap``
        among them (fewer than k where the groups run out: row -1, value -inf)."""
        self.k = k
        self.groups: np.ndarray | None = groups if cap is not None else None
        self.cap: int | None = cap if groups is not None else None
        self.values = np.full((0, columns), -np.inf, dtype=np.float32)
        self.rows = np.zeros((0, columns), dtype=np.int64)
        self.positions = np.zeros((0, columns), dtype=np.int64)

    def update(self, values: np.ndarray, positions: np.ndarray, rows: np.ndarray) -> None:
        """Add a block: values and positions [n, C] of rows numbered ``rows`` ([n], or [n, C] per column)."""
        rows = rows if rows.ndim == 2 else np.broadcast_to(rows[:, None], values.shape)
        all_values = np.concatenate([self.values, values.astype(np.float32)])
        all_rows = np.concatenate([self.rows, rows])
        all_positions = np.concatenate([self.positions, positions])
        order = np.lexsort((all_rows, -all_values), axis=0)
        kept = self._within_cap(np.take_along_axis(all_rows, order, axis=0))
        # the first k rows that are kept, in order, then the others (which fill a column short of k)
        place = np.arange(len(order))[:, None]
        first = np.argsort(np.where(kept, place, len(order) + place), axis=0, kind="stable")[:self.k]
        order, kept = np.take_along_axis(order, first, axis=0), np.take_along_axis(kept, first, axis=0)
        self.values = np.where(kept, np.take_along_axis(all_values, order, axis=0), -np.inf).astype(np.float32)
        self.rows = np.where(kept, np.take_along_axis(all_rows, order, axis=0), -1)
        self.positions = np.where(kept, np.take_along_axis(all_positions, order, axis=0), 0)

    def _within_cap(self, rows: np.ndarray) -> np.ndarray:
        """[n, C] bool: of rows sorted best first in each column, those that are not a filler (-1) and that
        have fewer than ``cap`` better rows of their group.  Exact streamed: a capped top k is the greedy
        basis of a matroid, and a row that is not in the basis of a set is in the basis of no larger set."""
        if self.groups is None or self.cap is None:
            return rows >= 0
        n = len(rows)
        group = np.where(rows >= 0, self.groups[np.maximum(rows, 0)], -1)
        place = np.broadcast_to(np.arange(n)[:, None], rows.shape)
        by_group = np.lexsort((place, group), axis=0)  # each column's rows by group, best first in each
        sorted_group = np.take_along_axis(group, by_group, axis=0)
        starts = np.ones(rows.shape, dtype=bool)
        starts[1:] = sorted_group[1:] != sorted_group[:-1]
        start = np.maximum.accumulate(np.where(starts, place, 0), axis=0)
        rank = np.empty(rows.shape, dtype=np.int64)
        np.put_along_axis(rank, by_group, place - start, axis=0)  # how many better rows of its group
        return (rows >= 0) & (rank < self.cap)

    def merge(self, other: RunningTopK) -> None:
        """Take in another shard's top k (of other rows): the result is the top k of both."""
        self.update(other.values, other.positions, other.rows)

