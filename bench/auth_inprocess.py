"""What IAM costs ListImageJobs in-process: the same app built twice, IAM on (the request
SDK-HMAC-SHA256-signed, verified in full every time) and ``IMAGEJOBS_AUTH=none`` (the
same request without Authorization, X-Sdk-Date and X-Project-Id), called directly, no HTTP
server (``--client token``: the demo root's X-Auth-Token instead of the signature;
``--user``: an IAM user's credentials, whose policies are evaluated, not the root's); rounds
alternate; CPU time per request, and with ``--instructions N`` instructions
per request under callgrind (each app counted from zero; dumps kept for
callgrind_annotate as DIR/cg/iam.callgrind and none.callgrind):

    .venv/bin/python bench/auth_inprocess.py --workdir DIR [--requests 3000] [--rounds 5]
    CALLGRIND_OUT_DIR=DIR/cg valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file=DIR/cg/cg.%p .venv/bin/python bench/auth_inprocess.py \
        --workdir DIR --requests 50 --rounds 1 --instructions 300

DIR holds a seeded imagejobs.db and its demo credentials (``--seed N`` makes them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

import list_inprocess as lip
import list_jobs as lj
from imagejobs.iam.signing import SigningAlgorithm, sign_request


async def build(workdir: Path, auth: str, counting: bool) -> lip.App:
    if counting:
        os.environ["IMAGEJOBS_IAM_CACHE_SECONDS"] = "3600"
    os.environ.update(
        IMAGEJOBS_DATABASE_URL=f"sqlite:///{workdir / 'imagejobs.db'}",
        IMAGEJOBS_DATA_DIR=str(workdir),
        IMAGEJOBS_AUTH=auth,
        IMAGEJOBS_EMBEDDED_RUNNER="false",
    )
    from imagejobs.bootstrap import build_app, prepare_identity
    from imagejobs.settings import load_settings
    from imagejobs.storage.migrate import migrate

    settings = load_settings()
    await migrate(settings.database_url)
    await prepare_identity(settings)
    return build_app(settings)


BENCH_USER = "bench-user"


async def iam_user(workdir: Path) -> dict[str, str]:
    """The demo account's IAM user ``bench-user`` (Workspace FullAccess in every project,
    an AK/SK of its own): made once, its credentials kept in DIR/bench-user.json."""
    path = workdir / f"{BENCH_USER}.json"
    if path.exists():
        saved: dict[str, str] = json.loads(path.read_text())
        return saved
    from imagejobs.keys import load_secret_box
    from imagejobs.services.identity import IdentityService
    from imagejobs.settings import load_settings
    from imagejobs.storage.database import database_for
    from imagejobs.storage.iam_store import SqlIamStore

    settings = load_settings()  # build() set the environment
    demo = json.loads((workdir / lj.DEMO_CREDENTIALS).read_text())
    database = database_for(settings.database_url)
    await database.open()
    try:
        identity = IdentityService(SqlIamStore(database), load_secret_box(settings))
        _, password = await identity.create_user(demo["account"], BENCH_USER)
        await identity.attach_policy(demo["account"], "Workspace FullAccess", user_name=BENCH_USER)
        key = await identity.create_access_key(demo["account"], BENCH_USER)
    finally:
        await database.close()
    credentials = {
        **demo,
        "user": BENCH_USER,
        "password": password,
        "access_key": key.key.access_key,
        "secret_key": key.secret_key,
    }
    path.write_text(json.dumps(credentials))
    return credentials


def signed_as(credentials: dict[str, str], path: str, query: str) -> dict[str, str]:
    headers = {"Host": lip.HOST, "X-Project-Id": lj.PROJECT}
    pairs = [tuple(pair.split("=", 1)) for pair in query.split("&")]
    headers |= sign_request(
        "GET",
        path,
        pairs,
        headers,
        b"",
        ak=credentials["access_key"],
        sk=credentials["secret_key"],
        algorithm=SigningAlgorithm.HMAC_SHA256,
        now=datetime.now(UTC),
    )
    return headers


async def token_headers(app: lip.App, workdir: Path, as_user: bool = False) -> dict[str, str]:
    """The demo root's (or bench-user's) X-Auth-Token for its project, asked of the app."""
    demo = (
        await iam_user(workdir)
        if as_user
        else json.loads((workdir / lj.DEMO_CREDENTIALS).read_text())
    )
    user = {"name": demo["user"], "password": demo["password"], "domain": {"name": demo["account"]}}
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": {"name": demo["region"]}},
        }
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{lip.HOST}") as client:
        response = await client.post("/v3/auth/tokens?nocatalog=true", json=body)
    response.raise_for_status()
    return {"Host": lip.HOST, "X-Auth-Token": response.headers["x-subject-token"]}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    path = f"/v1/{lj.PROJECT}/image-server-jobs"
    counting = bool(args.instructions)
    apps = {
        "iam": await build(args.workdir, "iam", counting),
        "none": await build(args.workdir, "none", counting),
    }
    stops = [await lip.lifespan(app) for app in apps.values()]
    if args.client == "token":
        iam_headers = await token_headers(apps["iam"], args.workdir, args.user)
    elif args.user:
        iam_headers = signed_as(await iam_user(args.workdir), path, args.query)
    else:
        iam_headers = lip.signed(args.workdir, path, args.query)
    requests = {
        "iam": lip.scope(path, args.query, iam_headers),
        "none": lip.scope(path, args.query, {"Host": lip.HOST}),
    }
    if args.same_headers:  # the no-auth app gets the signed headers too (it ignores them)
        requests["none"] = dict(requests["iam"])
    bodies = {}
    for name, app in apps.items():
        _, answer = await lip.timed(app, requests[name], 200)  # warm-up
        if answer.status != 200:
            raise RuntimeError(f"{name}: {answer.status} {answer.body[:300]!r}")
        bodies[name] = answer.body
    samples: dict[str, list[float]] = {name: [] for name in apps}
    names = list(apps)
    for number in range(args.rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            us, _ = await lip.timed(apps[name], requests[name], args.requests)
            samples[name].append(us)
    result: dict[str, Any] = {
        name: {"cpu_us_per_request": round(statistics.median(s), 1), "rounds": s}
        for name, s in samples.items()
    }
    if args.instructions:
        for name in names:
            count = await lip.count_instructions(
                name, apps[name], requests[name], args.instructions
            )
            result[name]["instructions_per_request"] = round(count)
    for stop in stops:
        await stop()
    result["bodies_identical"] = bodies["iam"] == bodies["none"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="holds imagejobs.db")
    parser.add_argument("--seed", type=int, default=0, help="first seed this many jobs")
    parser.add_argument("--requests", type=int, default=3000, help="per round and app")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--query", default=lj.QUERY)
    parser.add_argument(
        "--instructions", type=int, default=0, help="requests counted under callgrind (0: none)"
    )
    parser.add_argument(
        "--client",
        choices=["aksk", "token"],
        default="aksk",
        help="how the IAM app's request authenticates (the demo root's AK/SK or token)",
    )
    parser.add_argument(
        "--user",
        action="store_true",
        help="the IAM app's caller is an IAM user with Workspace FullAccess, not the root",
    )
    parser.add_argument(
        "--same-headers",
        action="store_true",
        help="send the no-auth app the signed request too (isolates the headers' cost)",
    )
    args = parser.parse_args()
    if args.seed:
        args.workdir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{args.workdir / 'imagejobs.db'}"
        lj.seed(url, lj.PROJECT, args.seed, args.workdir)
    result = asyncio.run(run(args))
    for name in ("iam", "none"):
        row = result[name]
        rounds = ", ".join(f"{us:.0f}" for us in row["rounds"])
        print(f"{name:<5} {row['cpu_us_per_request']:>7} µs/request  (rounds {rounds})")
    if "instructions_per_request" in result["iam"]:
        iam, none = (result[n]["instructions_per_request"] for n in ("iam", "none"))
        print(f"instructions/request: iam {iam:,}, none {none:,}, IAM +{iam - none:,}")
    ratio = result["none"]["cpu_us_per_request"] / result["iam"]["cpu_us_per_request"]
    print(f"CPU ratio none/iam: {ratio:.3f}; bodies identical: {result['bodies_identical']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
