"""The lean limit for ListImageServers on SQLite (lean_reference.py's twin).

One COUNT and one page query over the (project_id, id) index; the image reference and
the accounts sent as stored (their JSON text, spliced in with ``orjson.Fragment``), times
kept ready to send; orjson; no framework, auth, validation or request id.
``LEAN_DATABASE=... granian --interface asgi --working-dir bench lean_servers:app``.
"""

import orjson

from lean_reference import HEADERS, connect, db, wire_time

COUNT = "SELECT COUNT(*) FROM image_servers WHERE project_id = ?"
PAGE = (
    "SELECT id, name, description, image_ref, server_group_id, app_group_id, aps_server_id,"
    " instance_id, image_id, status, authorize_accounts, create_time, update_time,"
    " enterprise_project_id FROM image_servers WHERE project_id = ?"
    " ORDER BY id DESC LIMIT ? OFFSET ?"
)
Fragment = orjson.Fragment


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            db.append(connect())
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    query = scope["query_string"].decode()
    q = dict(part.split("=", 1) for part in query.split("&")) if query else {}
    project = scope["path"].split("/")[2]
    conn = db[0]
    counted = conn.execute(COUNT, (project,)).fetchone()
    rows = conn.execute(PAGE, (project, int(q.get("limit", 10)), int(q.get("offset", 0))))
    items = [
        {
            "id": str(r[0]),
            "name": r[1],
            "description": r[2],
            "image_ref": Fragment(r[3]),
            "server_group_id": r[4],
            "app_group_id": r[5],
            "server_id": r[6],
            "instance_id": r[7],
            "image_id": r[8],
            "status": r[9],
            "authorize_accounts": Fragment(r[10]),
            "create_time": wire_time(r[11]),
            "update_time": wire_time(r[12]),
            "enterprise_project_id": r[13],
        }
        for r in rows
    ]
    body = orjson.dumps({"count": counted[0], "items": items})
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    return await send({"type": "http.response.body", "body": body})
