"""The practical limit: ListImageJobs as a raw ASGI callable, nothing but the query and JSON.

Same tables, indexes, SQL shape (count from ``job_counters``, page by deferred join) and
JSON body as imagejobs; no framework, auth or validation. ``REFERENCE_DATABASE_URL`` picks
the database; serve it with Granian, e.g. from the repository root:
``granian --interface asgi --workers 1 --working-dir bench reference_app:app``.
"""

import os
import re
import sqlite3
import time
from urllib.parse import parse_qsl

import asyncpg
import msgspec

URL = os.environ.get("REFERENCE_DATABASE_URL", "sqlite:///data/imagejobs.db")
# imagejobs.storage.job_store.list_jobs_statement(with_status=True, dialect): per dialect.
TOTAL = (
    "SELECT c.total, j.id, j.job_type, j.status, j.begin_time, j.end_time, j.sub_jobs_total"
    " FROM (SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS total FROM job_counters"
    " WHERE project_id = $1 AND scope = 'job' AND job_type = $2 AND status = $3) AS c"
)
PAGE = (
    "SELECT id FROM jobs WHERE project_id = $1 AND job_type = $2 AND status = $3"
    " ORDER BY id DESC LIMIT $4 OFFSET $5"
)
SQLITE_SQL = (
    f"{TOTAL} LEFT JOIN ({PAGE}) AS page ON 1 = 1"
    " LEFT JOIN jobs AS j ON j.id = page.id ORDER BY j.id DESC"
)
POSTGRES_SQL = f"{TOTAL} LEFT JOIN jobs AS j ON j.id = ANY(ARRAY({PAGE})) ORDER BY j.id DESC"
PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=5000")
PRAGMAS += ("cache_size=-16384", "temp_store=MEMORY")  # as storage/database.py connect_sqlite
HEADERS = [(b"content-type", b"application/json")]
db = {}  # "fetch": an async (args) -> rows, made at lifespan startup in the worker's loop


async def connect():
    if URL.startswith("sqlite:"):
        path, sql = URL.removeprefix("sqlite:///"), SQLITE_SQL.replace("$", "?")
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        for pragma in PRAGMAS:
            conn.execute(f"PRAGMA {pragma}")

        async def fetch(args):
            return conn.execute(sql, args).fetchall()

        return fetch
    pool = await asyncpg.create_pool(re.sub(r"^postgres\w*(\+\w+)?://", "postgresql://", URL))
    return lambda args: pool.fetch(POSTGRES_SQL, *args)


def iso(ms):
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            db["fetch"] = await connect()
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    q = dict(parse_qsl(scope["query_string"].decode()))
    page = int(q.get("limit", 10)), int(q.get("offset", 0))
    rows = await db["fetch"]((scope["path"].split("/")[2], q["job_type"], q["status"], *page))
    items = [
        {
            "id": str(r[1]),
            "job_type": r[2],
            "begin_time": iso(r[4]),
            "end_time": iso(r[5]),
            "status": r[3],
            "sub_jobs_total": r[6],
        }
        for r in rows
        if r[1] is not None
    ]
    body = msgspec.json.encode({"count": rows[0][0], "items": items})
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    return await send({"type": "http.response.body", "body": body})
