"""Client-side signing, as the SDK's ``Signer.sign`` does it: used by the project's own
client, its tests and its benchmarks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from imagejobs.iam.signing.canonical import (
    SDK_DATE_FORMAT,
    QueryValue,
    as_utc,
    canonical_query_string,
    canonical_request,
    canonical_uri,
    compute_signature,
    payload_hash,
    string_to_sign,
)
from imagejobs.iam.signing.schemes import SCHEMES, UNSIGNED_PAYLOAD, SigningAlgorithm


def sign_request(
    method: str,
    url_path: str,
    query_pairs: Iterable[tuple[str, QueryValue]],
    headers: Mapping[str, str],
    body: bytes,
    *,
    ak: str,
    sk: str,
    algorithm: SigningAlgorithm,
    now: datetime,
) -> dict[str, str]:
    """Sign like the SDK's ``Signer.sign`` and return the headers to add to ``headers``.

    ``url_path`` is the percent-encoded path to send and ``headers`` must include ``Host``;
    send the query as :func:`canonical_query_string` renders it and header values trimmed,
    as the SDK does. An ``X-Sdk-Date`` already in ``headers`` is kept; otherwise ``now``
    is used.
    """
    if not ak or not sk:
        raise ValueError("both the access key and the secret key are required")
    scheme = SCHEMES[algorithm]
    lowered = {name.lower(): value for name, value in headers.items()}
    if "host" not in lowered:
        raise ValueError("headers must include Host")
    if "authorization" in lowered:
        raise ValueError("headers already carry an Authorization header")
    added: dict[str, str] = {}
    content_type = lowered.get("content-type")
    # Like the SDK: bodies that are not JSON/BSON are sent outside the signature.
    if content_type and not content_type.startswith(("application/json", "application/bson")):
        added[scheme.content_header] = UNSIGNED_PAYLOAD
    if "x-sdk-date" in lowered:
        sdk_date = lowered["x-sdk-date"].strip()
    else:
        sdk_date = as_utc(now).strftime(SDK_DATE_FORMAT)
        added["X-Sdk-Date"] = sdk_date
    lowered.update((name.lower(), value) for name, value in added.items())
    signed_headers = sorted(name for name in lowered if "_" not in name)
    canonical = canonical_request(
        method,
        canonical_uri(url_path),
        canonical_query_string(query_pairs),
        headers=lowered,
        signed_headers=signed_headers,
        hashed_payload=payload_hash(
            algorithm, body, lowered.get(scheme.content_key, "").strip() or None
        ),
    )
    signature = compute_signature(algorithm, sk, string_to_sign(algorithm, sdk_date, canonical))
    added["Authorization"] = (
        f"{algorithm} Access={ak}, SignedHeaders={';'.join(signed_headers)}, Signature={signature}"
    )
    return added
