"""AK/SK request signing and verification, byte-compatible with the Huawei Cloud SDKs.

Sans-I/O; ``shared/spec/huaweicloud-auth.md`` §1.3-1.7 is the reference for every rule.
The nouns live in their own modules: ``schemes`` (algorithms, hashes, the HMAC key),
``parsing`` (the received request, the Authorization header), ``canonical`` (canonical
request, string to sign), ``verification`` (the server's check), ``client`` (signing).
"""

from __future__ import annotations

from imagejobs.iam.signing.canonical import (
    QueryValue,
    canonical_query_string,
    canonical_request,
    canonical_uri,
    compute_signature,
    payload_hash,
    string_to_sign,
)
from imagejobs.iam.signing.client import sign_request
from imagejobs.iam.signing.parsing import ParsedAuthorization, ReceivedRequest, parse_authorization
from imagejobs.iam.signing.schemes import SigningAlgorithm, SigningKey
from imagejobs.iam.signing.verification import (
    DEFAULT_MAX_SKEW,
    authenticate_plain,
    plain_pads,
    verify,
)

__all__ = [
    "DEFAULT_MAX_SKEW",
    "ParsedAuthorization",
    "QueryValue",
    "ReceivedRequest",
    "SigningAlgorithm",
    "SigningKey",
    "authenticate_plain",
    "canonical_query_string",
    "canonical_request",
    "canonical_uri",
    "compute_signature",
    "parse_authorization",
    "payload_hash",
    "plain_pads",
    "sign_request",
    "string_to_sign",
    "verify",
]
