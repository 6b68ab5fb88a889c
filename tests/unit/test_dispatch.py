"""The operation table finds the route Starlette's router would, or leaves it to Starlette."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from imagejobs.api.dispatch import OperationTable


async def _answer(request: object) -> Response:
    return Response()


LIST = Route("/v1/{project_id}/image-servers", _answer, methods=["GET"])
CREATE = Route("/v1/{project_id}/image-servers", _answer, methods=["POST"])
BATCH = Route("/v1/{project_id}/image-servers/actions/batch-delete", _answer, methods=["PATCH"])
SHOW = Route("/v1/{project_id}/image-servers/{server_id}", _answer, methods=["GET"])
TABLE = OperationTable([LIST, CREATE, BATCH, SHOW])


def test_the_route_of_the_method_with_its_path_parameters() -> None:
    assert TABLE.match("/v1/p1/image-servers", "POST") == (CREATE, {"project_id": "p1"})
    assert TABLE.match("/v1/p1/image-servers", "HEAD") == (LIST, {"project_id": "p1"})
    assert TABLE.match("/v1/p1/image-servers/42", "GET") == (
        SHOW,
        {"project_id": "p1", "server_id": "42"},
    )
    assert TABLE.match("/v1/p1/image-servers/actions/batch-delete", "PATCH") == (
        BATCH,
        {"project_id": "p1"},
    )


def test_anything_else_is_left_to_starlette() -> None:
    # Its 405 (with Allow), its 404, and routes outside the table.
    assert TABLE.match("/v1/p1/image-servers", "DELETE") is None
    assert TABLE.match("/v1//image-servers", "GET") is None
    assert TABLE.match("/v1/p1/image-servers/", "GET") is None
    assert TABLE.match("/v1/p1/image-server", "GET") is None
    assert TABLE.match("/v3/auth/tokens", "POST") is None
