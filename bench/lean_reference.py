"""The lean limit for ListImageJobs on SQLite: a raw ASGI callable doing the least work.

One lookup in ``job_counters``, one page query over the (project, type, status, id) index,
times kept ready to send (each distinct epoch millisecond formatted once, then reused),
the body built by orjson; no framework, no auth, no validation, no request id. Serve it
with Granian from the repository root:
``LEAN_DATABASE=data/imagejobs.db granian --interface asgi --working-dir bench lean_reference:app``.
It needs orjson, which only the benchmark installs (imagejobs itself encodes with msgspec).
"""

import os
import sqlite3
import time

import orjson

PATH = os.environ.get("LEAN_DATABASE", "data/imagejobs.db")
COUNT = (
    "SELECT COALESCE(SUM(n), 0) FROM job_counters WHERE project_id = ? AND scope = 'job'"
    " AND job_type = ? AND status = ?"
)
PAGE = (
    "SELECT id, job_type, status, begin_time, end_time, sub_jobs_total FROM jobs"
    " WHERE project_id = ? AND job_type = ? AND status = ? ORDER BY id DESC LIMIT ? OFFSET ?"
)
HEADERS = [(b"content-type", b"application/json")]
TIMES: dict[int, str] = {}  # epoch ms -> wire form: "times stored ready to send"
db: list[sqlite3.Connection] = []


def wire_time(ms):
    if ms is None:
        return None
    text = TIMES.get(ms)
    if text is None:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
        TIMES[ms] = text
    return text


def connect():
    conn = sqlite3.connect(PATH, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-16384"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            db.append(connect())
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    q = dict(part.split("=", 1) for part in scope["query_string"].decode().split("&"))
    key = (scope["path"].split("/")[2], q["job_type"], q["status"])
    conn = db[0]
    counted = conn.execute(COUNT, key).fetchone()
    rows = conn.execute(PAGE, (*key, int(q.get("limit", 10)), int(q.get("offset", 0))))
    items = [
        {
            "id": str(r[0]),
            "job_type": r[1],
            "begin_time": wire_time(r[3]),
            "end_time": wire_time(r[4]),
            "status": r[2],
            "sub_jobs_total": r[5],
        }
        for r in rows
    ]
    body = orjson.dumps({"count": counted[0], "items": items})
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    return await send({"type": "http.response.body", "body": body})
