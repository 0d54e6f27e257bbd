"""Who may use the service: loopback by default, a bearer token otherwise.

Contract: `load_token` reads the token from `--token-file` (its first line, stripped) or else
`$INTERLOCK_TOKEN`; an empty or unreadable file is a `ConfigError`. `$INTERLOCK_TOKEN` is removed
from the process's environment as it is read (even when a file gives the token): every node's
command and every console a browser tab starts inherits that environment, and a node printing
it would put the token into stored events and event streams. `check_binding` refuses a
non-loopback host without a token. `BearerAuth` is an ASGI middleware: with a token, every
HTTP request but `GET /healthz` needs `Authorization: Bearer <token>`, compared with
`hmac.compare_digest`, and is answered 401 (JSON, with `WWW-Authenticate: Bearer`) without
it. The token appears in no message, log line or response.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import MutableMapping

    from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthz"})


class ConfigError(Exception):
    """A bad service setting: one sentence, exit 2."""


def load_token(
    token_file: str | None, environ: MutableMapping[str, str] | None = None
) -> str | None:
    env = os.environ if environ is None else environ
    from_env = env.pop("INTERLOCK_TOKEN", "").strip()
    if token_file:
        path = Path(token_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"cannot read the token file {path}: {reason}") from None
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not token:
            raise ConfigError(f"the token file {path} is empty")
        return token
    return from_env or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_binding(host: str, token: str | None) -> None:
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without a token: anyone who can reach it could "
            "launch and cancel runs; pass --token-file FILE or set INTERLOCK_TOKEN"
        )


class BearerAuth:
    """401 for requests without the token (all but the open paths)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._expected = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self._expected is None
            or scope["type"] != "http"
            or scope.get("path") in OPEN_PATHS
            or self._authorized(scope)
        ):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"error": "missing or wrong bearer token (Authorization: Bearer <token>)",
             "issues": []}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _authorized(self, scope: Scope) -> bool:
        assert self._expected is not None
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                given = value
                break
        scheme, _, credentials = given.partition(b" ")
        # The scheme is case-insensitive (RFC 9110); the token is compared in constant time.
        matches = hmac.compare_digest(credentials.strip(), self._expected)
        return scheme.lower() == b"bearer" and matches
