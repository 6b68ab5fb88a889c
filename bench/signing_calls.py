"""The signed path's own calls on the benchmark's signed ListImageJobs request, N times:
``ReceivedRequest.from_raw`` (ASGI's raw headers), ``parse_authorization`` and ``verify``,
with the C module (``_sigcore``, when built) or in Python alone (``--python``).

    .venv/bin/python bench/signing_calls.py all [--python] [--calls 100000]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/signing_calls.py all [--python] --calls 2000 --quiet

Prints µs per call. For instructions per call, run it under callgrind with ``--calls
2000`` and with ``--calls 0`` (PYTHONHASHSEED=0 both) and divide the difference by 2,000.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from imagejobs.iam.signing import parsing, verification
from imagejobs.iam.signing.client import sign_request
from imagejobs.iam.signing.parsing import ReceivedRequest, parse_authorization
from imagejobs.iam.signing.schemes import SigningAlgorithm, SigningKey

PATH = "/v1/a4da8115c9d8464ead3a38309130523f/image-server-jobs"
QUERY = "job_type=CREATE_SERVER&limit=10&offset=0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["from_raw", "verify", "all"])
    parser.add_argument("--python", action="store_true", help="without the C module")
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.python:
        verification._compiled = None
        parsing._new_request = None
        parsing._parse_plain = None
    headers = {"Host": "127.0.0.1:20080", "X-Project-Id": "a4da8115c9d8464ead3a38309130523f"}
    secret, now = "S" * 40, datetime.now(UTC)
    pairs = [tuple(pair.split("=")) for pair in QUERY.split("&")]
    headers |= sign_request(
        "GET",
        PATH,
        pairs,
        headers,
        b"",
        ak="AK" * 10,
        sk=secret,
        algorithm=SigningAlgorithm.HMAC_SHA256,
        now=now,
    )
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    path, query = PATH.encode(), QUERY.encode()
    request = ReceivedRequest.from_raw("GET", path, query, raw, b"")
    parsed = parse_authorization(request.header_map["authorization"])
    key, moment = SigningKey(secret), now.timestamp()
    verification.verify(request, key, moment, authorization=parsed)
    from_raw, verify = ReceivedRequest.from_raw, verification.verify
    start = time.perf_counter()
    if args.what == "from_raw":
        for _ in range(args.calls):
            from_raw("GET", path, query, raw, b"")
    elif args.what == "verify":
        for _ in range(args.calls):
            verify(request, key, moment, authorization=parsed)
    else:
        for _ in range(args.calls):
            received = from_raw("GET", path, query, raw, b"")
            parsed = parse_authorization(received.header_map["authorization"])
            verify(received, key, moment, authorization=parsed)
    if args.calls and not args.quiet:
        elapsed = (time.perf_counter() - start) / args.calls * 1e6
        print(f"{args.what} {'python' if args.python else 'compiled'}: {elapsed:.2f} µs/call")


if __name__ == "__main__":
    main()
