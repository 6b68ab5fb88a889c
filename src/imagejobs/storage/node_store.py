"""Leases on the node part of ids (domain/ids.py), so that live processes never share one:
a process leases the node whose lease ended longest ago, and renews it while it mints."""

from __future__ import annotations

from imagejobs.storage.database import Database, Statement


def _lease(lock: str) -> Statement:
    return Statement(
        "UPDATE id_nodes SET owner = :owner, expires_at = :until WHERE node = (SELECT node"
        " FROM id_nodes WHERE expires_at <= :now OR owner = :owner"
        # Its own node first; else the one idle the longest (its last ids are the oldest).
        f" ORDER BY CASE WHEN owner = :owner THEN 0 ELSE 1 END, expires_at, node LIMIT 1{lock})"
        " RETURNING node"
    )


LEASE_NODE = {"sqlite": _lease(""), "postgresql": _lease(" FOR UPDATE SKIP LOCKED")}
# Still ours (even past its expiry, if nobody took it since): nobody else minted with it.
RENEW_NODE = Statement(
    "UPDATE id_nodes SET expires_at = :until WHERE node = :node AND owner = :owner RETURNING node"
)


class SqlNodeStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def lease(self, owner: str, now: int, until: int, node: int | None) -> int | None:
        """Renew ``owner``'s ``node``, or lease a free one; None when all are taken."""
        async with self._db.transaction() as tx:
            if node is not None:
                params = {"node": node, "owner": owner, "until": until}
                if await tx.fetch(RENEW_NODE, params):
                    return node
            params = {"owner": owner, "now": now, "until": until}
            rows = await tx.fetch(LEASE_NODE[self._db.dialect], params)
            return int(rows[0][0]) if rows else None
