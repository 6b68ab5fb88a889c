"""What the API client commands (``jobs``, ``servers``) share: credential flags, the
output format, and one translation of every client error to a message and an exit code."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from imagejobs.cli.common import output_option
from imagejobs.client import (
    ApiClient,
    ApiError,
    BadEndpoint,
    CredentialsProblem,
    Unreachable,
    resolve_credentials,
)

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILED = 1  # a watched job failed, or the API refused for another reason (409, …)
EXIT_USAGE = 2  # bad flags, or the API found a parameter invalid (400)
EXIT_AUTH = 3  # no or bad credentials (401), or not allowed (403)
EXIT_NOT_FOUND = 4
EXIT_SERVER = 5  # the server failed (5xx)
EXIT_UNREACHABLE = 6

_EXIT_BY_STATUS = {400: EXIT_USAGE, 401: EXIT_AUTH, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND}


def exit_code_of(status: int) -> int:
    """The exit code of an error with this HTTP status (the README's table)."""
    return EXIT_SERVER if status >= 500 else _EXIT_BY_STATUS.get(status, EXIT_FAILED)


CLIENT_EPILOG = (
    "Credentials come from flags, else HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK,"
    " HUAWEICLOUD_SDK_PROJECT_ID, IMAGEJOBS_ENDPOINT and IMAGEJOBS_TOKEN, else the JSON"
    " profile (--profile, IMAGEJOBS_PROFILE or ~/.config/imagejobs/profile.json). Exit codes:"
    " 1 job failed or request refused, 2 usage or invalid parameter, 3 authentication or"
    " permission, 4 not found, 5 server error, 6 server unreachable, 130 interrupted (Ctrl-C)."
)


class ClientExit(click.ClickException):
    """A one-line error with its own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # click declares ``exit_code`` on the class; each of these errors has its own.
        self.exit_code = exit_code  # type: ignore[misc]


def _options(function: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option("--endpoint", help="API URL [default: http://127.0.0.1:8080]."),
            click.option("--ak", "access_key", help="Access key (AK)."),
            click.option(
                "--sk",
                "secret_key",
                help="Secret key (SK); other local users see flags in the process list:"
                " prefer HUAWEICLOUD_SDK_SK or a profile.",
            ),
            click.option("--project-id", help="Project ID."),
            click.option(
                "--token",
                help="An IAM token (X-Auth-Token) instead of AK/SK; as --sk, prefer"
                " IMAGEJOBS_TOKEN or a profile.",
            ),
            click.option(
                "--profile",
                type=click.Path(dir_okay=False, path_type=Path),
                help="JSON profile with endpoint, access_key, secret_key, project_id or token.",
            ),
        ]
    ):
        function = option(function)
    return function


class Context:
    """A command's client and output format."""

    def __init__(self, client: ApiClient, output: str) -> None:
        self.client = client
        self.output = output

    @property
    def as_json(self) -> bool:
        return self.output == "json"

    def emit_json(self, data: Any) -> None:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))

    def emitted_page(self, page: dict[str, Any]) -> bool:
        """Print a page as JSON or as its items' IDs (``-o id``) and say so; False: the
        table is the caller's to print."""
        if self.as_json:
            self.emit_json(page)
        elif self.output == "id":
            for item in page["items"]:
                click.echo(item["id"])
        else:
            return False
        return True


def api_list_command(function: Callable[..., R]) -> Callable[..., R]:
    """An ``api_command`` that lists: its ``-o`` also takes ``id``, the items' IDs one a
    line, so that a shell script takes an ID from a list without parsing JSON."""
    return api_command(function, outputs=("table", "json", "id"))


def api_command(
    function: Callable[..., R], outputs: tuple[str, ...] = ("table", "json")
) -> Callable[..., R]:
    """Adds the credential and output flags, builds the client, and turns every expected
    problem into one line on stderr and its exit code."""

    @functools.wraps(function)
    def wrapper(**kwargs: Any) -> R:
        flags = {name: kwargs.pop(name) for name in ("endpoint", "access_key", "secret_key")}
        flags |= {name: kwargs.pop(name) for name in ("project_id", "token")}
        profile, output = kwargs.pop("profile"), kwargs.pop("output")
        try:
            credentials = resolve_credentials(flags, os.environ, profile)
            for warning in credentials.warnings:
                click.echo(f"Warning: {warning}", err=True)
            client = ApiClient(credentials)
            return function(Context(client, output), **kwargs)
        except CredentialsProblem as exc:
            raise ClientExit(str(exc), EXIT_AUTH) from None
        except BadEndpoint as exc:
            raise ClientExit(f"{exc} (see --endpoint)", EXIT_USAGE) from None
        except Unreachable as exc:
            raise ClientExit(
                f"{exc} (is `imagejobs serve` running there? see --endpoint)", EXIT_UNREACHABLE
            ) from None
        except ApiError as exc:
            exit_code = exit_code_of(exc.status)
            where = f"HTTP {exc.status}, request id {exc.request_id or '-'}"
            raise ClientExit(f"{exc.code}: {exc.message} ({where})", exit_code) from None

    command: Callable[..., R] = output_option(outputs)(_options(wrapper))
    return command
