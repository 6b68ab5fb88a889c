"""The project's own client of the public API (used by the CLI): credentials, signing
with ``iam``'s signer, and the paths of ``api``'s route table."""

from imagejobs.client.credentials import Credentials, CredentialsProblem, resolve_credentials
from imagejobs.client.http import ApiClient, ApiError, BadEndpoint, Unreachable

__all__ = [
    "ApiClient",
    "ApiError",
    "BadEndpoint",
    "Credentials",
    "CredentialsProblem",
    "Unreachable",
    "resolve_credentials",
]
