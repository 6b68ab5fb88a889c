"""The identity store: every SQL statement over the ``iam_*`` tables.

Every change bumps the ``iam_generation`` counter in the same transaction; processes
compare it with the generation their caches were filled at (services/access.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imagejobs.iam.credentials import digest
from imagejobs.iam.records import (
    AccessKey,
    Account,
    Attachment,
    Grant,
    Group,
    PolicyRecord,
    Project,
    Token,
    User,
)
from imagejobs.storage.database import Database, Row, Statement

_ACCOUNT = "id, name, enabled, created_at"
_PROJECT = "id, account_id, name, created_at"
_USER = "id, account_id, name, password_hash, is_root, enabled, password_version, created_at"
_GROUP = "id, account_id, name, created_at"
_KEY = (
    "access_key, user_id, secret_ciphertext, status, description, created_at, expires_at,"
    " security_token_hash, project_id, session_policy, token_hash"
)
_POLICY = "id, account_id, name, description, document, created_at"
_ISSUED = (  # the columns of iam_tokens
    "token_hash, user_id, project_id, methods, issued_at, expires_at, password_version, revoked"
)


def failure_subject(kind: str, *parts: str) -> str:
    """The ``iam_failures`` key of what failed (``login-user``, account and user name;
    ``login-address`` and address; ``signature``, access key and address): a digest, so
    that any name a client sends fits the column."""
    return digest("\0".join((kind, *parts)))


def _prefixed(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


BUMP_GENERATION = Statement(
    "INSERT INTO iam_state (name, value) VALUES ('iam_generation', 1)"
    " ON CONFLICT (name) DO UPDATE SET value = iam_state.value + 1"
)
GET_GENERATION = Statement("SELECT value FROM iam_state WHERE name = 'iam_generation'")
COUNT_ACCOUNTS = Statement("SELECT COUNT(*) FROM iam_accounts")

INSERT_ACCOUNT = Statement(
    "INSERT INTO iam_accounts (id, name, enabled, created_at)"
    " VALUES (:id, :name, :enabled, :created_at)"
)
INSERT_PROJECT = Statement(
    "INSERT INTO iam_projects (id, account_id, name, created_at)"
    " VALUES (:id, :account_id, :name, :created_at)"
)
INSERT_USER = Statement(
    "INSERT INTO iam_users (id, account_id, name, password_hash, is_root, enabled,"
    " password_version, created_at) VALUES (:id, :account_id, :name, :password_hash,"
    " :is_root, :enabled, :password_version, :created_at)"
)
INSERT_GROUP = Statement(
    "INSERT INTO iam_groups (id, account_id, name, created_at)"
    " VALUES (:id, :account_id, :name, :created_at)"
)
INSERT_MEMBER = Statement(
    "INSERT INTO iam_group_members (group_id, user_id) VALUES (:group_id, :user_id)"
    " ON CONFLICT DO NOTHING"
)
DELETE_MEMBER = Statement(
    "DELETE FROM iam_group_members WHERE group_id = :group_id AND user_id = :user_id"
)
INSERT_KEY = Statement(
    f"INSERT INTO iam_access_keys ({_KEY}) VALUES (:access_key, :user_id, :secret_ciphertext,"
    " :status, :description, :created_at, :expires_at, :security_token_hash, :project_id,"
    " :session_policy, :token_hash)"
)
SET_KEY_STATUS = Statement(
    "UPDATE iam_access_keys SET status = :status WHERE access_key = :access_key"
)
DELETE_KEY = Statement("DELETE FROM iam_access_keys WHERE access_key = :access_key")
INSERT_POLICY = Statement(
    f"INSERT INTO iam_policies ({_POLICY}) VALUES (:id, :account_id, :name, :description,"
    " :document, :created_at)"
)
DELETE_POLICY = Statement("DELETE FROM iam_policies WHERE id = :id")
INSERT_ATTACHMENT = Statement(
    "INSERT INTO iam_policy_attachments (policy_id, principal_type, principal_id, project_id)"
    " VALUES (:policy_id, :principal_type, :principal_id, :project_id) ON CONFLICT DO NOTHING"
)
DELETE_ATTACHMENT = Statement(
    "DELETE FROM iam_policy_attachments WHERE policy_id = :policy_id"
    " AND principal_type = :principal_type AND principal_id = :principal_id"
    " AND project_id = :project_id"
)
SET_PASSWORD = Statement(
    "UPDATE iam_users SET password_hash = :password_hash,"
    " password_version = password_version + 1 WHERE id = :id"
)
SET_USER_ENABLED = Statement("UPDATE iam_users SET enabled = :enabled WHERE id = :id")
DELETE_USER = Statement("DELETE FROM iam_users WHERE id = :id")
INSERT_TOKEN = Statement(
    f"INSERT INTO iam_tokens ({_ISSUED}) VALUES (:token_hash, :user_id, :project_id,"
    " :methods, :issued_at, :expires_at, :password_version, :revoked)"
)
REVOKE_TOKEN = Statement("UPDATE iam_tokens SET revoked = :revoked WHERE token_hash = :token_hash")
REVOKE_USER_TOKENS = Statement("UPDATE iam_tokens SET revoked = :revoked WHERE user_id = :user_id")
# The per-user bounds: read in the inserting transaction (concurrent inserts may pass a
# bound by their number; nothing else can).
COUNT_LIVE_TOKENS = Statement(
    "SELECT COUNT(*) FROM iam_tokens WHERE user_id = :user_id AND expires_at > :now AND NOT revoked"
)
# A temporary key counts while its token is unrevoked (a password change revokes them).
_LIVE_KEY = (
    " FROM iam_access_keys AS k JOIN iam_tokens AS t ON t.token_hash = k.token_hash"
    " WHERE k.user_id = :user_id AND k.expires_at > :now AND NOT t.revoked"
)
COUNT_LIVE_KEYS = Statement("SELECT COUNT(*)" + _LIVE_KEY)
OLDEST_LIVE_TOKEN_EXPIRY = Statement(
    "SELECT MIN(expires_at) FROM iam_tokens WHERE user_id = :user_id AND expires_at > :now"
    " AND NOT revoked"
)
OLDEST_LIVE_KEY_EXPIRY = Statement("SELECT MIN(k.expires_at)" + _LIVE_KEY)
# The purge: what can never authenticate again. A temporary key whose token is gone or
# revoked is dead too (its token's revocation already dropped every cache).
DELETE_EXPIRED_TOKENS = Statement("DELETE FROM iam_tokens WHERE expires_at <= :now OR revoked")
DELETE_EXPIRED_KEYS = Statement(
    "DELETE FROM iam_access_keys WHERE expires_at IS NOT NULL AND (expires_at <= :now"
    " OR NOT EXISTS (SELECT 1 FROM iam_tokens AS t"
    " WHERE t.token_hash = iam_access_keys.token_hash))"
)
DELETE_STALE_FAILURES = Statement(
    "DELETE FROM iam_failures WHERE window_started_at <= :window_floor"
    " AND (locked_until IS NULL OR locked_until <= :now)"
)
# Failures per subject within a window: a failure after the window starts a new one.
COUNT_FAILURE = Statement(
    "INSERT INTO iam_failures (subject, failures, window_started_at, locked_until)"
    " VALUES (:subject, 1, :now, NULL) ON CONFLICT (subject) DO UPDATE SET"
    " failures = CASE WHEN iam_failures.window_started_at <= :window_floor THEN 1"
    " ELSE iam_failures.failures + 1 END,"
    " window_started_at = CASE WHEN iam_failures.window_started_at <= :window_floor"
    " THEN :now ELSE iam_failures.window_started_at END RETURNING failures, locked_until"
)
LOCK_SUBJECT = Statement(
    "UPDATE iam_failures SET failures = 0, window_started_at = :now,"
    " locked_until = :locked_until WHERE subject = :subject"
)
CLEAR_FAILURES = Statement("DELETE FROM iam_failures WHERE subject = :subject")
FAILURES_OF = Statement(
    "SELECT subject, failures, window_started_at, locked_until FROM iam_failures"
    " WHERE subject IN (:first, :second)"
)

ACCOUNT_BY_NAME = Statement(f"SELECT {_ACCOUNT} FROM iam_accounts WHERE name = :name")
ACCOUNT_BY_ID = Statement(f"SELECT {_ACCOUNT} FROM iam_accounts WHERE id = :id")
LIST_ACCOUNTS = Statement(f"SELECT {_ACCOUNT} FROM iam_accounts ORDER BY name")
PROJECT_BY_ID = Statement(f"SELECT {_PROJECT} FROM iam_projects WHERE id = :id")
PROJECTS_OF_ACCOUNT = Statement(
    f"SELECT {_PROJECT} FROM iam_projects WHERE account_id = :account_id ORDER BY name"
)
USER_BY_NAME = Statement(
    f"SELECT {_USER} FROM iam_users WHERE account_id = :account_id AND name = :name"
)
USER_BY_ID = Statement(f"SELECT {_USER} FROM iam_users WHERE id = :id")
USERS_OF_ACCOUNT = Statement(
    f"SELECT {_USER} FROM iam_users WHERE account_id = :account_id ORDER BY name"
)
GROUP_BY_NAME = Statement(
    f"SELECT {_GROUP} FROM iam_groups WHERE account_id = :account_id AND name = :name"
)
GROUPS_OF_ACCOUNT = Statement(
    f"SELECT {_GROUP} FROM iam_groups WHERE account_id = :account_id ORDER BY name"
)
KEY_WITH_OWNER = Statement(
    f"SELECT {_prefixed(_KEY, 'k')}, {_prefixed(_USER, 'u')}, {_prefixed(_ACCOUNT, 'a')},"
    f" {_prefixed(_ISSUED, 't')}"
    " FROM iam_access_keys AS k JOIN iam_users AS u ON u.id = k.user_id"
    " JOIN iam_accounts AS a ON a.id = u.account_id"
    " LEFT JOIN iam_tokens AS t ON t.token_hash = k.token_hash WHERE k.access_key = :access_key"
)
KEYS_OF_ACCOUNT = Statement(
    f"SELECT {_prefixed(_KEY, 'k')} FROM iam_access_keys AS k"
    " JOIN iam_users AS u ON u.id = k.user_id"
    " WHERE u.account_id = :account_id AND k.expires_at IS NULL ORDER BY k.created_at"
)
# Any one stored key (no order: the first the database finds), to try the operator key on.
SOME_ACCESS_KEY = Statement(f"SELECT {_KEY} FROM iam_access_keys LIMIT 1")
POLICY_BY_NAME = Statement(
    f"SELECT {_POLICY} FROM iam_policies WHERE name = :name"
    " AND (account_id = :account_id OR account_id IS NULL)"
    " ORDER BY account_id IS NULL"  # the account's own policy wins over a system one
)
POLICIES_OF_ACCOUNT = Statement(
    f"SELECT {_POLICY} FROM iam_policies WHERE account_id = :account_id OR account_id IS NULL"
    " ORDER BY account_id IS NOT NULL, name"
)
# The documents of every policy attached to the user or its groups, for this project.
POLICIES_FOR_USER = Statement(
    "SELECT DISTINCT p.id, p.document FROM iam_policies AS p"
    " JOIN iam_policy_attachments AS t ON t.policy_id = p.id"
    " WHERE t.project_id IN (:project_id, '*') AND ("
    " (t.principal_type = 'user' AND t.principal_id = :user_id)"
    " OR (t.principal_type = 'group' AND t.principal_id IN"
    " (SELECT group_id FROM iam_group_members WHERE user_id = :user_id)))"
    " ORDER BY p.id"
)
ATTACHMENTS_OF_ACCOUNT = Statement(
    "SELECT t.policy_id, p.name, t.principal_type, t.principal_id,"
    " COALESCE(u.name, g.name), t.project_id"
    " FROM iam_policy_attachments AS t JOIN iam_policies AS p ON p.id = t.policy_id"
    " LEFT JOIN iam_users AS u ON t.principal_type = 'user' AND u.id = t.principal_id"
    " LEFT JOIN iam_groups AS g ON t.principal_type = 'group' AND g.id = t.principal_id"
    " WHERE COALESCE(u.account_id, g.account_id) = :account_id"
    " ORDER BY p.name, t.principal_type, t.principal_id, t.project_id"
)
MEMBERS_OF_GROUP = Statement(
    f"SELECT {_prefixed(_USER, 'u')} FROM iam_users AS u"
    " JOIN iam_group_members AS m ON m.user_id = u.id WHERE m.group_id = :group_id"
    " ORDER BY u.name"
)
TOKEN_BY_HASH = Statement(f"SELECT {_ISSUED} FROM iam_tokens WHERE token_hash = :token_hash")

_ACCOUNT_WIDTH = len(_ACCOUNT.split(","))
_USER_WIDTH = len(_USER.split(","))
_KEY_WIDTH = len(_KEY.split(","))


def _account(row: Row, at: int = 0) -> Account:
    return Account(row[at], row[at + 1], bool(row[at + 2]), row[at + 3])


def _project(row: Row) -> Project:
    return Project(row[0], row[1], row[2], row[3])


def _user(row: Row, at: int = 0) -> User:
    return User(
        row[at],
        row[at + 1],
        row[at + 2],
        row[at + 3],
        bool(row[at + 4]),
        bool(row[at + 5]),
        row[at + 6],
        row[at + 7],
    )


def _group(row: Row) -> Group:
    return Group(row[0], row[1], row[2], row[3])


def _key(row: Row) -> AccessKey:
    return AccessKey(*row[:_KEY_WIDTH])


def _policy(row: Row) -> PolicyRecord:
    return PolicyRecord(row[0], row[1], row[2], row[3], row[4], row[5])


def _token(row: Row, at: int = 0) -> Token:
    r = row[at : at + 8]
    return Token(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]))


def _values(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}


class SqlIamStore:
    """Identity persistence on SQLite or PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

    # --- reads ----------------------------------------------------------------------

    async def generation(self) -> int:
        rows = await self._db.fetch(GET_GENERATION, {})
        return int(rows[0][0]) if rows else 0

    async def has_accounts(self) -> bool:
        rows = await self._db.fetch(COUNT_ACCOUNTS, {})
        return bool(rows[0][0])

    async def account_by_name(self, name: str) -> Account | None:
        rows = await self._db.fetch(ACCOUNT_BY_NAME, {"name": name})
        return _account(rows[0]) if rows else None

    async def account_by_id(self, account_id: str) -> Account | None:
        rows = await self._db.fetch(ACCOUNT_BY_ID, {"id": account_id})
        return _account(rows[0]) if rows else None

    async def accounts(self) -> list[Account]:
        return [_account(r) for r in await self._db.fetch(LIST_ACCOUNTS, {})]

    async def project(self, project_id: str) -> Project | None:
        rows = await self._db.fetch(PROJECT_BY_ID, {"id": project_id})
        return _project(rows[0]) if rows else None

    async def projects(self, account_id: str) -> list[Project]:
        rows = await self._db.fetch(PROJECTS_OF_ACCOUNT, {"account_id": account_id})
        return [_project(r) for r in rows]

    async def user_by_name(self, account_id: str, name: str) -> User | None:
        rows = await self._db.fetch(USER_BY_NAME, {"account_id": account_id, "name": name})
        return _user(rows[0]) if rows else None

    async def user(self, user_id: str) -> User | None:
        rows = await self._db.fetch(USER_BY_ID, {"id": user_id})
        return _user(rows[0]) if rows else None

    async def users(self, account_id: str) -> list[User]:
        return [
            _user(r) for r in await self._db.fetch(USERS_OF_ACCOUNT, {"account_id": account_id})
        ]

    async def group_by_name(self, account_id: str, name: str) -> Group | None:
        rows = await self._db.fetch(GROUP_BY_NAME, {"account_id": account_id, "name": name})
        return _group(rows[0]) if rows else None

    async def groups(self, account_id: str) -> list[Group]:
        rows = await self._db.fetch(GROUPS_OF_ACCOUNT, {"account_id": account_id})
        return [_group(r) for r in rows]

    async def group_members(self, group_id: str) -> list[User]:
        return [_user(r) for r in await self._db.fetch(MEMBERS_OF_GROUP, {"group_id": group_id})]

    async def access_key(
        self, access_key: str
    ) -> tuple[AccessKey, User, Account, Token | None] | None:
        """The key, its owner, and for a temporary key the token it was made from (None
        once that token is gone)."""
        rows = await self._db.fetch(KEY_WITH_OWNER, {"access_key": access_key})
        if not rows:
            return None
        row = rows[0]
        token_at = _KEY_WIDTH + _USER_WIDTH + _ACCOUNT_WIDTH
        token = None if row[token_at] is None else _token(row, token_at)
        return (
            _key(row),
            _user(row, _KEY_WIDTH),
            _account(row, _KEY_WIDTH + _USER_WIDTH),
            token,
        )

    async def access_keys(self, account_id: str) -> list[AccessKey]:
        rows = await self._db.fetch(KEYS_OF_ACCOUNT, {"account_id": account_id})
        return [_key(r) for r in rows]

    async def some_access_key(self) -> AccessKey | None:
        """One stored access key, any, or None when there is none."""
        rows = await self._db.fetch(SOME_ACCESS_KEY, {})
        return _key(rows[0]) if rows else None

    async def policy_by_name(self, account_id: str, name: str) -> PolicyRecord | None:
        rows = await self._db.fetch(POLICY_BY_NAME, {"account_id": account_id, "name": name})
        return _policy(rows[0]) if rows else None

    async def policies(self, account_id: str) -> list[PolicyRecord]:
        rows = await self._db.fetch(POLICIES_OF_ACCOUNT, {"account_id": account_id})
        return [_policy(r) for r in rows]

    async def policy_documents_for(self, user_id: str, project_id: str) -> list[tuple[str, str]]:
        """(policy id, document) of every policy reaching the user in this project."""
        rows = await self._db.fetch(
            POLICIES_FOR_USER, {"user_id": user_id, "project_id": project_id}
        )
        return [(r[0], r[1]) for r in rows]

    async def attachments(self, account_id: str) -> list[Attachment]:
        rows = await self._db.fetch(ATTACHMENTS_OF_ACCOUNT, {"account_id": account_id})
        return [Attachment(r[0], r[1], r[2], r[3], r[4] or "", r[5]) for r in rows]

    async def token(self, token_hash: str) -> Token | None:
        rows = await self._db.fetch(TOKEN_BY_HASH, {"token_hash": token_hash})
        return _token(rows[0]) if rows else None

    # --- writes: each one transaction, each bumps the generation -------------------------

    async def _change(self, *steps: tuple[Statement, dict[str, Any]]) -> None:
        async with self._db.transaction() as tx:
            for statement, params in steps:
                await tx.execute(statement, params)
            await tx.execute(BUMP_GENERATION, {})

    async def create_account(
        self, account: Account, root: User, projects: Sequence[Project], key: AccessKey
    ) -> None:
        await self._change(
            (INSERT_ACCOUNT, _values(account)),
            (INSERT_USER, _values(root)),
            *((INSERT_PROJECT, _values(p)) for p in projects),
            (INSERT_KEY, _values(key)),
        )

    async def create_project(self, project: Project) -> None:
        await self._change((INSERT_PROJECT, _values(project)))

    async def create_user(self, user: User) -> None:
        await self._change((INSERT_USER, _values(user)))

    async def set_password(self, user_id: str, password_hash: str) -> None:
        """A new password; the user's tokens (already refused: their password version is
        old) are revoked, so that they no longer count towards its bound."""
        await self._change(
            (SET_PASSWORD, {"id": user_id, "password_hash": password_hash}),
            (REVOKE_USER_TOKENS, {"user_id": user_id, "revoked": True}),
        )

    async def set_user_enabled(self, user_id: str, enabled: bool) -> None:
        await self._change((SET_USER_ENABLED, {"id": user_id, "enabled": enabled}))

    async def delete_user(self, user_id: str) -> None:
        await self._change((DELETE_USER, {"id": user_id}))

    async def create_group(self, group: Group) -> None:
        await self._change((INSERT_GROUP, _values(group)))

    async def add_member(self, group_id: str, user_id: str) -> None:
        await self._change((INSERT_MEMBER, {"group_id": group_id, "user_id": user_id}))

    async def remove_member(self, group_id: str, user_id: str) -> None:
        await self._change((DELETE_MEMBER, {"group_id": group_id, "user_id": user_id}))

    async def create_access_key(self, key: AccessKey) -> None:
        await self._change((INSERT_KEY, _values(key)))

    async def set_access_key_status(self, access_key: str, status: str) -> None:
        await self._change((SET_KEY_STATUS, {"access_key": access_key, "status": status}))

    async def delete_access_key(self, access_key: str) -> None:
        await self._change((DELETE_KEY, {"access_key": access_key}))

    async def create_policy(self, policy: PolicyRecord) -> None:
        await self._change((INSERT_POLICY, _values(policy)))

    async def delete_policy(self, policy_id: str) -> None:
        await self._change((DELETE_POLICY, {"id": policy_id}))

    async def attach(self, grant: Grant) -> None:
        await self._change((INSERT_ATTACHMENT, _values(grant)))

    async def detach(self, grant: Grant) -> None:
        await self._change((DELETE_ATTACHMENT, _values(grant)))

    async def insert_token(self, token: Token, limit: int) -> bool:
        """Store a token unless its user already has ``limit`` live ones (False then).
        Issuing a token changes no cached answer: no generation bump."""
        live = {"user_id": token.user_id, "now": token.issued_at}
        return await self._insert_within(COUNT_LIVE_TOKENS, live, limit, INSERT_TOKEN, token)

    async def create_temporary_key(self, key: AccessKey, limit: int) -> bool:
        """Store a temporary key unless its user already has ``limit`` live ones. A new,
        random access key is in no cache: no generation bump (minting keys must not drop
        every process's caches)."""
        live = {"user_id": key.user_id, "now": key.created_at}
        return await self._insert_within(COUNT_LIVE_KEYS, live, limit, INSERT_KEY, key)

    async def _insert_within(
        self, count: Statement, live: dict[str, Any], limit: int, insert: Statement, record: Any
    ) -> bool:
        async with self._db.transaction() as tx:
            if (await tx.fetch(count, live))[0][0] >= limit:
                return False
            await tx.execute(insert, _values(record))
        return True

    async def oldest_live_expiry(self, user_id: str, now: int, *, tokens: bool) -> int | None:
        """When the first of the user's live tokens (or temporary keys) expires."""
        statement = OLDEST_LIVE_TOKEN_EXPIRY if tokens else OLDEST_LIVE_KEY_EXPIRY
        rows = await self._db.fetch(statement, {"user_id": user_id, "now": now})
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    async def revoke_token(self, token_hash: str) -> None:
        await self._change((REVOKE_TOKEN, {"token_hash": token_hash, "revoked": True}))

    async def revoke_user_tokens(self, user_id: str) -> None:
        await self._change((REVOKE_USER_TOKENS, {"user_id": user_id, "revoked": True}))

    async def purge_expired(self, now: int, failure_window_ms: int) -> None:
        """Delete expired or revoked tokens, dead temporary keys and stale failure counts."""
        async with self._db.transaction() as tx:
            await tx.execute(DELETE_EXPIRED_TOKENS, {"now": now})
            await tx.execute(DELETE_EXPIRED_KEYS, {"now": now})
            await tx.execute(
                DELETE_STALE_FAILURES, {"now": now, "window_floor": now - failure_window_ms}
            )

    # --- failure counters (logins, signatures) -------------------------------------------

    async def failures(self, first: str, second: str) -> dict[str, tuple[int, int, int | None]]:
        """subject -> (failures, window start, locked until) for the two subjects."""
        rows = await self._db.fetch(FAILURES_OF, {"first": first, "second": second})
        return {r[0]: (int(r[1]), int(r[2]), r[3]) for r in rows}

    async def count_failure(
        self, subject: str, now: int, *, window_ms: int, limit: int, lockout_ms: int
    ) -> int | None:
        """Count one failure; the ``limit``-th within ``window_ms`` locks the subject for
        ``lockout_ms``. The end of a lock already in force when this failure came (so the
        failure that locks is answered as a plain failure, the next ones as locked)."""
        async with self._db.transaction() as tx:
            rows = await tx.fetch(
                COUNT_FAILURE, {"subject": subject, "now": now, "window_floor": now - window_ms}
            )
            failures, locked_until = int(rows[0][0]), rows[0][1]
            if locked_until is not None and locked_until > now:
                return int(locked_until)
            if failures >= limit:
                await tx.execute(
                    LOCK_SUBJECT, {"subject": subject, "now": now, "locked_until": now + lockout_ms}
                )
        return None

    async def clear_failures(self, subject: str) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(CLEAR_FAILURES, {"subject": subject})
