"""Where the client's credentials come from: flags, then environment variables, then a
profile file (JSON; the demo's ``demo-credentials.json`` is one)."""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
DEFAULT_PROFILE = Path("~/.config/imagejobs/profile.json")

# Environment variable of each credential: the SDK's names where the SDK has one.
ENVIRONMENT = {
    "endpoint": "IMAGEJOBS_ENDPOINT",
    "access_key": "HUAWEICLOUD_SDK_AK",
    "secret_key": "HUAWEICLOUD_SDK_SK",
    "project_id": "HUAWEICLOUD_SDK_PROJECT_ID",
    "token": "IMAGEJOBS_TOKEN",
}
PROFILE_ENVIRONMENT = "IMAGEJOBS_PROFILE"
# Keys a profile may use for each credential (the demo file's names first).
_PROFILE_KEYS = {
    "endpoint": ("endpoint",),
    "access_key": ("access_key", "ak"),
    "secret_key": ("secret_key", "sk"),
    "project_id": ("project_id",),
    "token": ("token",),
}


class CredentialsProblem(Exception):
    """The credentials are missing, contradictory or unreadable; the message says which."""


@dataclass(frozen=True, slots=True)
class Credentials:
    endpoint: str
    project_id: str  # "" with a token: the token's project (ApiClient asks IAM)
    access_key: str = ""
    secret_key: str = ""
    token: str = ""
    # What the caller should tell the user (a profile other users may read).
    warnings: tuple[str, ...] = ()


def _exposed(path: Path, found: Mapping[str, str]) -> str | None:
    """A warning when the profile holds a secret and others may read it, as ssh does."""
    if not (found.get("secret_key") or found.get("token")):
        return None
    mode = stat.S_IMODE(path.expanduser().stat().st_mode)
    if not mode & 0o077:
        return None
    return f"{path} holds a secret and is readable by other users (mode {mode:o}): chmod 600 {path}"


def _read_profile(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.expanduser().read_text())
    except OSError as exc:
        raise CredentialsProblem(f"cannot read the profile {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # say where, as for any JSON file a person edits by hand
        raise CredentialsProblem(f"the profile {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CredentialsProblem(f"the profile {path} is not a JSON object")
    found: dict[str, str] = {}
    for name, keys in _PROFILE_KEYS.items():
        for key in keys:
            if isinstance(data.get(key), str) and data[key]:
                found[name] = data[key]
                break
    return found


def resolve_credentials(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    profile: Path | None = None,
) -> Credentials:
    """Each credential from ``flags``, else ``environ``, else the profile file (``profile``,
    ``IMAGEJOBS_PROFILE`` or ``~/.config/imagejobs/profile.json`` when it exists)."""
    profile_path = profile or (
        Path(environ[PROFILE_ENVIRONMENT]) if environ.get(PROFILE_ENVIRONMENT) else None
    )
    if profile_path is None and DEFAULT_PROFILE.expanduser().is_file():
        profile_path = DEFAULT_PROFILE
    from_profile = _read_profile(profile_path) if profile_path else {}
    exposed = _exposed(profile_path, from_profile) if profile_path else None
    values = {
        name: flags.get(name) or environ.get(variable) or from_profile.get(name) or ""
        for name, variable in ENVIRONMENT.items()
    }
    if not any(values[name] for name in ("access_key", "secret_key", "project_id", "token")):
        # Nothing at all: most likely the profile was forgotten (a new shell after the demo).
        raise CredentialsProblem(
            "no credentials: pass --profile (after ./scripts/demo: data/demo-credentials.json)"
            " or set IMAGEJOBS_PROFILE, or give --ak, --sk and --project-id, or --token"
        )
    if not values["project_id"] and not values["token"]:  # a token names its own project
        raise CredentialsProblem(
            "no project id: pass --project-id, set HUAWEICLOUD_SDK_PROJECT_ID or use --profile"
        )
    if not values["token"] and not (values["access_key"] and values["secret_key"]):
        raise CredentialsProblem(
            "no credentials: pass --ak and --sk (or HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK),"
            " --token, or --profile"
        )
    return Credentials(
        endpoint=(values["endpoint"] or DEFAULT_ENDPOINT).rstrip("/"),
        project_id=values["project_id"],
        access_key=values["access_key"],
        secret_key=values["secret_key"],
        token=values["token"],
        warnings=(exposed,) if exposed else (),
    )
