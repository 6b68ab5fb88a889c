"""Parameters of the image-server APIs (spec §5), defined once for validation and OpenAPI."""

from __future__ import annotations

from imagejobs.domain.params import StringParam

SERVER_ID_PATH = StringParam(
    "server_id", 1, 128, "Image server ID.", location="path", required=True
)
SERVER_NAME = StringParam(
    "server_name", 0, 1024, "Part of the image server's name (a case-sensitive substring)."
)
SERVER_ID = StringParam("server_id", 0, 128, "Image server ID.")
ENTERPRISE_PROJECT_ID = StringParam(
    "enterprise_project_id", 0, 128, "Enterprise project ID; empty or 0 is the default one."
)
