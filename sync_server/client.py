"""The client side of the JSON API (httpx), used by `engine-sync` and by the Engine agent.

A refusal from the server (4xx) becomes `ApiRefused` carrying the server's error line, hint
and details; an unreachable server is `ServerUnreachable`. The token travels only in the
Authorization header and is never part of a message.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from enginekit.errors import EngineKitError, UserInputError
from enginekit.text import one_line
from sync_server.bandwidth import Throttle

SERVER_ENV = "ENGINE_SYNC_SERVER"
TOKEN_ENV = "ENGINE_SYNC_TOKEN"
CHUNK = 1024 * 1024
# A remote server forwards its computers' check-ins with its own site token in this header.
SITE_HEADER = "X-Sync-Site-Token"


class ApiRefused(UserInputError):
    """The server refused a request (4xx). Its own hint wins; else the status's default."""

    default_hint = "engine-sync --help lists the commands; --server is the server's root URL"

    def __init__(
        self, status: int, message: str, hint: str | None, details: tuple[str, ...]
    ) -> None:
        super().__init__(message, hint=hint, details=details)
        self.status = status
        self.server_hint = hint  # None: the server gave none, a caller may name a better one


class BadServerAddress(UserInputError):
    default_hint = "give --server http://HOST:PORT (the address engine-sync serve prints)"


def checked_server_url(server: str) -> str:
    """`server` as a base URL, or BadServerAddress: http(s)://HOST[:PORT][/PATH]."""
    try:
        url = httpx.URL(server)
        valid = url.scheme in ("http", "https") and bool(url.host)
    except (httpx.InvalidURL, TypeError, ValueError):
        valid = False
    if not valid or not server.isprintable():
        raise BadServerAddress(f"--server {one_line(server)}: not an http:// or https:// URL")
    return server.rstrip("/")


class ServerUnreachable(EngineKitError):
    """No answer from the server (exit status 1: nothing was done)."""


class SyncClient:
    def __init__(self, server: str, token: str, timeout: float = 30.0) -> None:
        self.server = checked_server_url(server)
        self._http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    @classmethod
    def from_options(cls, server: str | None, token: str | None) -> SyncClient:
        server = server or os.environ.get(SERVER_ENV)
        token = token or os.environ.get(TOKEN_ENV)
        if not server or not token:
            raise UserInputError(
                "engine-sync needs the server URL and a token",
                hint=f"give --server URL --token TOKEN, or set {SERVER_ENV} and {TOKEN_ENV} "
                "(the admin token is in the server's DATA/admin-token)",
            )
        return cls(server, token)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        try:
            body = response.json()
            message = one_line(str(body.get("error") or response.reason_phrase))
            hint = body.get("hint")
            hint = one_line(str(hint)) if hint else None
            details = tuple(one_line(str(d)) for d in body.get("details") or ())
        except ValueError:
            message, hint, details = response.reason_phrase, None, ()
        if response.status_code == 401:
            hint = hint or "check the token (engine-sync token create makes a computer token)"
        raise ApiRefused(
            response.status_code,
            f"server refused ({response.status_code}): {message}",
            hint,
            details,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(
                f"{self.server}: no answer from the server ({type(exc).__name__}: {exc})",
                hint="is engine-sync serve running there?",
            ) from None
        self._check(response)
        return response.json() if response.content else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def upload(self, path: str, file: Path) -> Any:
        def chunks() -> Any:
            with file.open("rb") as src:
                while chunk := src.read(CHUNK):
                    yield chunk

        return self.request(
            "POST",
            path,
            params={"name": file.name},
            content=chunks(),
            headers={"Content-Type": "application/octet-stream"},
            timeout=None,
        )

    def download(
        self,
        path: str,
        dest: Path,
        *,
        rate: int | None = None,
        go_on: Callable[[int], bool] | None = None,
    ) -> int:
        """Append the rest of `path` to `dest`, resuming from its size with HTTP Range;
        returns the number of bytes received. With `rate`, at most that many bytes per
        second; `go_on(size of dest)` after each chunk may stop the download (False)."""
        have = dest.stat().st_size if dest.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        throttle = Throttle(rate) if rate else None
        try:
            with self._http.stream("GET", path, headers=headers, timeout=None) as response:
                if response.status_code == 416:
                    return 0  # nothing left to fetch: the sha256 check decides
                if not response.is_success:
                    response.read()
                    self._check(response)
                resumed = response.status_code == 206
                mode = "ab" if resumed else "wb"
                base = have if resumed else 0
                received = 0
                with dest.open(mode) as out:
                    for chunk in response.iter_bytes(throttle.chunk if throttle else CHUNK):
                        out.write(chunk)
                        received += len(chunk)
                        if throttle is not None:
                            throttle.pace(received)
                        if go_on is not None:
                            out.flush()
                            if not go_on(base + received):
                                break
                return received
        except httpx.HTTPError as exc:
            raise ServerUnreachable(
                f"{self.server}: the download broke off ({type(exc).__name__}); "
                "it resumes at the next check-in",
                hint="check the link to the server; nothing needs to be done by hand",
            ) from None
