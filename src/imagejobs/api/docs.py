"""``/docs``: the interactive API explorer, with Swagger UI assets shipped in a wheel
(no CDN: users may be offline)."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from swagger_ui_bundle import swagger_ui_path

ASSETS_DIRECTORY = Path(str(swagger_ui_path))

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>imagejobs API explorer</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui",
                                 deepLinking: true, tryItOutEnabled: true});
  </script>
</body>
</html>
"""


async def docs_page(request: Request) -> HTMLResponse:
    return HTMLResponse(_PAGE)
