"""A project's whole state at once, for test suites: reset it (or every project's).

Reset deletes, in one transaction, the project's engine tasks, sub-jobs, jobs, image
servers, counters and steering rules, and unlocks its account's access keys; accounts,
users and keys stay, so a test's credentials keep working. A runner in the middle of a
step then finds its task gone: its fencing token no longer holds and it writes nothing.
"""

from __future__ import annotations

from imagejobs.storage.database import Database, Statement, Transaction
from imagejobs.storage.engine_store import retrying_transaction
from imagejobs.storage.iam_store import BUMP_GENERATION

# Child rows first (tasks, sub-jobs), the lock order of the engine store.
_PROJECT_TABLES = ("engine_tasks", "sub_jobs", "jobs", "image_servers", "job_counters")
RESET_PROJECT = tuple(
    Statement(f"DELETE FROM {table} WHERE project_id = :project_id") for table in _PROJECT_TABLES
)
RESET_PROJECT_RULES = Statement("DELETE FROM engine_rules WHERE project_id = :project_id")
RESET_ALL = tuple(Statement(f"DELETE FROM {table}") for table in (*_PROJECT_TABLES, "engine_rules"))
UNLOCK_PROJECT_KEYS = Statement(
    "UPDATE iam_access_keys SET failed_attempts = 0, locked_until = NULL"
    " WHERE (failed_attempts > 0 OR locked_until IS NOT NULL) AND user_id IN"
    " (SELECT u.id FROM iam_users u JOIN iam_projects p ON p.account_id = u.account_id"
    " WHERE p.id = :project_id)"
)
UNLOCK_ALL_KEYS = Statement(
    "UPDATE iam_access_keys SET failed_attempts = 0, locked_until = NULL"
    " WHERE failed_attempts > 0 OR locked_until IS NOT NULL"
)


class SqlStateStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def reset(self, project_id: str | None) -> None:
        """Forget one project's jobs, servers and rules (None: every project's)."""

        async def run(tx: Transaction) -> None:
            if project_id is None:
                for statement in RESET_ALL:
                    await tx.execute(statement, {})
                await tx.execute(UNLOCK_ALL_KEYS, {})
            else:
                params = {"project_id": project_id}
                for statement in (*RESET_PROJECT, RESET_PROJECT_RULES, UNLOCK_PROJECT_KEYS):
                    await tx.execute(statement, params)
            # Processes drop their cached keys (and so their lockouts) at once.
            await tx.execute(BUMP_GENERATION, {})

        await retrying_transaction(self._db, run)
