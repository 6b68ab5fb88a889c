"""The one error tree. Every error the service can answer with lives here.

Each class carries its HTTP status, a stable error code and a default message; the API
edge maps any ``ImageJobsError`` to ``{"error_code", "error_msg"}`` in one place. Codes
follow ``shared/spec/workspaceapp-image-api.md`` §1.6 (``WKS.*``) and the gateway's
``APIGW.*`` codes from ``shared/spec/huaweicloud-auth.md`` §2.2.

    ImageJobsError                       500 WKS.00211401
    ├── InvalidParameter                 400 WKS.00211102
    │   └── InvalidIamRequest            400 IAM.0011 (the /v3 identity API)
    ├── AuthenticationFailed             401 APIGW.0301
    │   ├── SignatureMismatch            401 APIGW.0301 (counts towards an AK's lockout)
    │   └── LoginFailed                  401 (Keystone-shaped body, POST /v3/auth/tokens)
    │       └── LoginLocked              401 (the user's password logins are locked)
    ├── PermissionDenied                 403 WKS.00081102
    ├── QuotaExceeded                    403 WKS.00081105 (a per-project quota)
    ├── NotFound                         404 WKS.00211902
    │   └── RouteNotFound                404 APIGW.0101
    ├── MethodNotAllowed                 405 WKS.00000405
    ├── RequestTimeout                   408 APIGW.0201
    ├── Conflict                         409 WKS.00211103
    │   └── CredentialLimitReached       409 WKS.00211103 (too many live tokens or keys)
    ├── RequestTooLarge                  413 APIGW.0201
    │   └── HeadersTooLarge              431 APIGW.0201
    ├── Throttled                        429 APIGW.0308 (a rate or queue limit, with Retry-After)
    ├── InternalError                    500 WKS.00211401
    ├── ServiceUnavailable               503 WKS.00050902
    └── InvalidSettings                  (start-up only: a bad setting or flag)
"""

from __future__ import annotations

from typing import ClassVar


class ImageJobsError(Exception):
    """The requested operation failed. Please try again later."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "WKS.00211401"
    # Seconds after which a retry may succeed: sent as Retry-After when set.
    retry_after: int | None = None

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        super().__init__(self.message)


class InvalidParameter(ImageJobsError):
    """The parameter is invalid."""

    status = 400
    code = "WKS.00211102"

    def __init__(self, parameter: str, reason: str) -> None:
        self.parameter = parameter
        self.reason = reason
        super().__init__(f"The parameter is invalid: {parameter} {reason}")


class InvalidIamRequest(InvalidParameter):
    """Request body is invalid."""

    code = "IAM.0011"


class AuthenticationFailed(ImageJobsError):
    """Incorrect IAM authentication information: Unauthorized"""

    status = 401
    code = "APIGW.0301"

    def __init__(self, detail: str = "Unauthorized") -> None:
        super().__init__(f"Incorrect IAM authentication information: {detail}")


class SignatureMismatch(AuthenticationFailed):
    """Incorrect IAM authentication information: verify aksk signature fail"""


class LoginFailed(AuthenticationFailed):
    """The username or password is wrong."""

    # The Keystone-compatible token API answers {"error": {"code", "message", "title"}}.
    keystone_title: ClassVar[str] = "Unauthorized"

    def __init__(self, message: str = "The username or password is wrong.") -> None:
        ImageJobsError.__init__(self, message)


class PermissionDenied(ImageJobsError):
    """User does not have permission to access this resource."""

    status = 403
    code = "WKS.00081102"


class NotFound(ImageJobsError):
    """The resource does not exist."""

    status = 404
    code = "WKS.00211902"


class RouteNotFound(NotFound):
    """The API does not exist or has not been published in the environment."""

    code = "APIGW.0101"


class MethodNotAllowed(ImageJobsError):
    """The method specified in the request is not allowed for this resource."""

    status = 405
    code = "WKS.00000405"


class Conflict(ImageJobsError):
    """The request could not be completed due to a conflict of the resource."""

    status = 409
    code = "WKS.00211103"


class RequestTimeout(ImageJobsError):
    """Request timeout: the request body did not arrive in time."""

    status = 408
    code = "APIGW.0201"


class RequestTooLarge(ImageJobsError):
    """Request entity too large."""

    status = 413
    code = "APIGW.0201"


class QuotaExceeded(ImageJobsError):
    """The quota is exceeded."""

    # The catalogue's "Number of ... exceeds limit {0}" error (spec §6).
    status = 403
    code = "WKS.00081105"


class HeadersTooLarge(RequestTooLarge):
    """Request header fields too large."""

    status = 431


class InternalError(ImageJobsError):
    """The requested operation failed. Please try again later."""


class ServiceUnavailable(ImageJobsError):
    """The service is now unavailable to process the request."""

    status = 503
    code = "WKS.00050902"


class InvalidSettings(ImageJobsError):
    """A setting is invalid."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(f"{name} {reason}")


# --- credential protection (docs/security.md) -------------------------------


class LoginLocked(LoginFailed):
    """Password logins of this user are locked after too many failures; try again later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "The user's password logins are locked after too many failed attempts; "
            f"try again in {retry_after} seconds."
        )
        self.retry_after = retry_after


class CredentialLimitReached(Conflict):
    """The user already holds the most live credentials of this kind."""


class Throttled(ImageJobsError):
    """The throttling threshold has been reached."""

    status = 429
    code = "APIGW.0308"

    def __init__(self, policy: str, retry_after: int) -> None:
        # The gateway's wording: "The throttling threshold has been reached: policy user
        # over ratelimit,limit:XX,time:1 second".
        super().__init__(f"The throttling threshold has been reached: {policy}")
        self.retry_after = retry_after
