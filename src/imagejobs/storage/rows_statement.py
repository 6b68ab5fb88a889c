"""A change applied to many rows at once, as each database runs it best."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imagejobs.storage.database import Statement, Transaction


class RowsStatement:
    """One change applied to many rows. SQLite runs it per row (``executemany``: in
    process, no round trips); PostgreSQL runs it once over arrays (``unnest``), so a batch
    is one execution and one plan, not one per row, whatever its size."""

    def __init__(self, per_row: str, over_arrays: str, columns: dict[str, str]) -> None:
        self.per_row = Statement(per_row)
        # :column is the column's values as an array of the given SQL type.
        arrays = {name: f"CAST(:{name} AS {kind}[])" for name, kind in columns.items()}
        self.over_arrays = Statement(over_arrays.format(**arrays))
        self._columns = tuple(columns)

    async def run(self, tx: Transaction, dialect: str, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        if dialect != "postgresql":
            await tx.execute_many(self.per_row, rows)
            return
        params: dict[str, Any] = {name: [row[name] for row in rows] for name in self._columns}
        for name in self.over_arrays.names:  # scalars shared by every row
            if name not in params:
                params[name] = rows[0][name]
        await tx.execute(self.over_arrays, params)
