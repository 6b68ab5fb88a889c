"""The lean limit for ListImageSubJobs on SQLite (lean_reference.py's twin).

The count from ``job_counters`` (scope 'sub_job'), or with ``job_id`` a COUNT over the
(job_id, id) index; one page query over the (project, type, id) index, or (job_id, id)
with ``job_id``; times kept ready to send; orjson; no framework, auth, validation or
request id. ``LEAN_DATABASE=... granian --interface asgi --working-dir bench
lean_sub_jobs:app``.
"""

import orjson

from lean_reference import HEADERS, connect, db, wire_time

COUNT = (
    "SELECT COALESCE(SUM(n), 0) FROM job_counters WHERE project_id = ? AND scope = 'sub_job'"
    " AND job_type = ?"
)
COUNT_OF_JOB = "SELECT COUNT(*) FROM sub_jobs WHERE project_id = ? AND job_type = ? AND job_id = ?"
COLUMNS = (
    "SELECT id, job_id, job_type, status, begin_time, end_time, resource_id, resource_name,"
    " error_code, error_message FROM sub_jobs WHERE project_id = ? AND job_type = ?"
)
PAGE = f"{COLUMNS} ORDER BY id DESC LIMIT ? OFFSET ?"
PAGE_OF_JOB = f"{COLUMNS} AND job_id = ? ORDER BY id DESC LIMIT ? OFFSET ?"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            db.append(connect())
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    q = dict(part.split("=", 1) for part in scope["query_string"].decode().split("&"))
    project = scope["path"].split("/")[2]
    page = (int(q.get("limit", 10)), int(q.get("offset", 0)))
    conn = db[0]
    if q.get("job_id"):
        key = (project, q["job_type"], int(q["job_id"]))
        counted = conn.execute(COUNT_OF_JOB, key).fetchone()
        rows = conn.execute(PAGE_OF_JOB, (*key, *page))
    else:
        key = (project, q["job_type"])
        counted = conn.execute(COUNT, key).fetchone()
        rows = conn.execute(PAGE, (*key, *page))
    items = [
        {
            "id": str(r[0]),
            "job_type": r[2],
            "job_resource_info": {"resource_id": r[6], "resource_name": r[7]},
            "begin_time": wire_time(r[4]),
            "end_time": wire_time(r[5]),
            "status": r[3],
            "job_execute_info": {"error_code": r[8], "error_message": r[9]},
            "project_id": project,
            "job_id": str(r[1]),
        }
        for r in rows
    ]
    body = orjson.dumps({"count": counted[0], "items": items})
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    return await send({"type": "http.response.body", "body": body})
