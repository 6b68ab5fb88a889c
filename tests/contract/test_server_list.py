"""ListImageServers' page, on SQLite and PostgreSQL: the store's rows (on SQLite the
page as one value, each row a JSON array in no set order) turned into the body directly
(server_schemas.server_page_json), which must be what the wire structs encode, byte for
byte, for every filter and page."""

from __future__ import annotations

import random

import pytest

from imagejobs.api.schemas import encoder
from imagejobs.api.server_schemas import ListImageServersResponse, server_info, server_page_json
from imagejobs.domain.enums import ImageServerStatus
from imagejobs.domain.ids import parse_id
from imagejobs.domain.records import PageRequest
from imagejobs.domain.servers import AccountInfo, ImageRef, ImageServer, ServerFilter
from imagejobs.services import Services
from imagejobs.storage.database import Database
from imagejobs.storage.server_store import INSERT_SERVER, server_row
from tests.engine_support import services_for
from tests.factories import new_project

pytestmark = pytest.mark.anyio

# Texts a server's fields can hold: JSON's escapes, the row separator (\x1e), other
# control characters and non-ASCII.
AWKWARD_TEXTS = (
    "",
    'quote " and backslash \\',
    "separator \x1e, bell \x07, tab \t, newline \n, del \x7f",
    "镜像测试 é \u2028",
    ";,",
)
# Ids of other lengths than the service's 18 digits still list in id order.
ODD_IDS = (7, 95, 10**17 - 1, 10**18 + 3)


@pytest.fixture
def services(database: Database, database_url: str) -> Services:
    return services_for(database, database_url)


def _server(project: str, n: int, rng: random.Random) -> ImageServer:
    created = 1_764_000_000_000 + n * 61_013 + rng.randint(0, 999)
    return ImageServer(
        id=ODD_IDS[n] if n < len(ODD_IDS) else 697_612_196_993_040_384 + n * 262_145,
        project_id=project,
        name=f"{rng.choice(('alpha', 'beta', '镜像'))}-{n}",
        description=rng.choice(AWKWARD_TEXTS),
        status=rng.choice(list(ImageServerStatus)),
        image_ref=rng.choice(
            (
                ImageRef(rng.choice(AWKWARD_TEXTS) or "image-1", "private"),
                ImageRef("image-2", "gold", "00301-xxxx-0--0", "90a6e84bb3e822fe"),
            )
        ),
        authorize_accounts=(
            AccountInfo(f"user{n}", rng.choice(("USER", "USER_GROUP")), rng.choice(AWKWARD_TEXTS)),
        ),
        create_time=created,
        update_time=created + rng.choice((0, 1_320)),
        server_group_id=rng.choice(AWKWARD_TEXTS),
        app_group_id=rng.choice(("", "app-group-1")),
        server_id=rng.choice(("", f"wksapp-{n}")),
        instance_id=rng.choice(("", f"instance-{n}")),
        image_id=rng.choice(("", "image-9")),
        enterprise_project_id=rng.choice(("0", "ep-1")),
        spec={"flavor": {"id": "x"}, "note": rng.choice(AWKWARD_TEXTS)},
    )


async def test_a_listed_page_is_what_the_wire_structs_encode(
    services: Services, database: Database
) -> None:
    rng = random.Random(8)
    project, other = new_project(), new_project()
    servers = [_server(project, n, rng) for n in range(27)]
    async with database.transaction() as tx:
        for server in servers:
            await tx.execute(INSERT_SERVER, server_row(server))
        # Another project's server: never listed, never counted.
        stranger = _server(other, 100, rng)
        await tx.execute(INSERT_SERVER, server_row(stranger))

    filters = [
        ServerFilter(),
        ServerFilter(server_name="alpha"),
        ServerFilter(server_name="镜像"),
        ServerFilter(server_name="no such name"),
        ServerFilter(server_id=str(servers[5].id)),
        ServerFilter(server_id=str(ODD_IDS[1])),
        ServerFilter(server_id=str(stranger.id)),
        ServerFilter(server_id="not a number"),
        ServerFilter(enterprise_project_id="ep-1"),
        ServerFilter(enterprise_project_id=""),  # the default project, "0"
        ServerFilter(server_name="beta", enterprise_project_id="0"),
    ]
    non_empty = 0
    for server_filter in filters:
        matching = sorted(
            (s for s in servers if _matches(s, server_filter)), key=lambda s: s.id, reverse=True
        )
        for offset, limit in ((0, 10), (3, 2), (0, 100), (20, 10), (40, 5)):
            page = await services.servers.list(project, server_filter, PageRequest(offset, limit))
            shown = matching[offset : offset + limit]
            assert page.count == len(matching)
            assert len(page.items) == len(shown)
            expected = ListImageServersResponse(len(matching), [server_info(s) for s in shown])
            assert server_page_json(page.count, page.items) == encoder.encode(expected)
            non_empty += bool(shown)
    assert non_empty > 20  # the filters found servers, not only empty pages


def _matches(server: ImageServer, server_filter: ServerFilter) -> bool:
    if server_filter.server_name and server_filter.server_name not in server.name:
        return False
    # An id the service never mints (parse_id: not its 18 digits) matches nothing.
    if server_filter.server_id and parse_id(server_filter.server_id) != server.id:
        return False
    project = server_filter.enterprise_project_id
    return project is None or server.enterprise_project_id == (project or "0")
