"""Steering rules in the database, where every API and worker process reads them."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from imagejobs.domain.steering import ANY, Rule
from imagejobs.storage.database import Database, Statement

_COLUMNS = "project_id, job_type, rule, updated_at"
ALL_RULES = Statement(f"SELECT {_COLUMNS} FROM engine_rules ORDER BY project_id, job_type")
RULES_FOR = Statement(
    f"SELECT {_COLUMNS} FROM engine_rules WHERE project_id IN ('{ANY}', :project_id)"
)
GET_RULE = Statement(
    f"SELECT {_COLUMNS} FROM engine_rules WHERE project_id = :project_id AND job_type = :job_type"
)
PUT_RULE = Statement(
    "INSERT INTO engine_rules (project_id, job_type, rule, updated_at)"
    " VALUES (:project_id, :job_type, :rule, :updated_at)"
    " ON CONFLICT (project_id, job_type)"
    " DO UPDATE SET rule = excluded.rule, updated_at = excluded.updated_at"
)
DELETE_RULE = Statement(
    "DELETE FROM engine_rules WHERE project_id = :project_id AND job_type = :job_type"
    " RETURNING project_id"
)
DELETE_ALL = Statement("DELETE FROM engine_rules RETURNING project_id")
# Inside a statement that writes a new task (PostgreSQL): its due time under the most
# specific rule that sets a queue delay for (:project_id, :job_type), from :now, as
# domain/steering.py resolve() picks it; NULL when no rule sets one.
_QUEUE_SECONDS = "CAST(CAST(r.rule AS JSONB) ->> 'queue_seconds' AS DOUBLE PRECISION)"
RULED_DUE_AT_SQL = (
    f"(SELECT CAST(:now AS BIGINT) + CAST(round({_QUEUE_SECONDS} * 1000) AS BIGINT)"
    f" FROM engine_rules AS r WHERE r.project_id IN ('{ANY}', :project_id)"
    f" AND r.job_type IN ('{ANY}', :job_type) AND {_QUEUE_SECONDS} IS NOT NULL"
    f" ORDER BY r.project_id <> '{ANY}' DESC, r.job_type <> '{ANY}' DESC LIMIT 1)"
)
_encoder = msgspec.json.Encoder()


def _rule(row: Sequence[object]) -> Rule:
    return msgspec.json.decode(str(row[2]), type=Rule)


class SqlSteeringStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def all_rules(self) -> list[Rule]:
        return [_rule(row) for row in await self._db.fetch(ALL_RULES, {})]

    async def rules_for(self, project_ids: Sequence[str]) -> list[Rule]:
        """The rules that may apply to these projects (theirs and the ``*`` ones)."""
        rules: dict[tuple[str, str], Rule] = {}
        for project_id in sorted(set(project_ids)) or [ANY]:
            for row in await self._db.fetch(RULES_FOR, {"project_id": project_id}):
                rule = _rule(row)
                rules[(rule.project_id, rule.job_type)] = rule
        return list(rules.values())

    async def get(self, project_id: str, job_type: str) -> Rule | None:
        rows = await self._db.fetch(GET_RULE, {"project_id": project_id, "job_type": job_type})
        return _rule(rows[0]) if rows else None

    async def put(self, rule: Rule) -> None:
        params = {
            "project_id": rule.project_id,
            "job_type": rule.job_type,
            "rule": _encoder.encode(rule).decode(),
            "updated_at": rule.updated_at,
        }
        async with self._db.transaction() as tx:
            await tx.execute(PUT_RULE, params)

    async def delete(self, project_id: str, job_type: str) -> int:
        async with self._db.transaction() as tx:
            rows = await tx.fetch(DELETE_RULE, {"project_id": project_id, "job_type": job_type})
        return len(rows)

    async def delete_all(self) -> int:
        async with self._db.transaction() as tx:
            return len(await tx.fetch(DELETE_ALL, {}))
