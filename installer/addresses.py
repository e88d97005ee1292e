"""Synchronizer server addresses: parse and check one, and see whether it answers.

A server is `host`, `host:port` or `http(s)://host[:port][/path]`, where host is a DNS name
(RFC 1123 labels), an IPv4 dotted quad (each part 0-255) or an IPv6 address in brackets
(`[::1]:443`), and the port is 1-65535. `server_problem()` is the one check the answer-file
schema and the registration screen share; `unreachable()` is the interactive front end's
quick look (one TCP connect with a short timeout) before it asks for the token.
`ServerAddress.url` is the URL a registered computer's agent calls: without a scheme, https
on port 443 (the default) and http on any other port (what `engine-sync serve` speaks).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_SERVER_LENGTH = 253 + 2 + 6 + 8 + 64  # a DNS name, brackets, a port, a scheme, a path
MAX_HOST_LENGTH = 253
DEFAULT_PORTS = {"http": 80, "https": 443, "": 443}
CONNECT_TIMEOUT_SECONDS = 3.0

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_PATH = re.compile(r"^(?:/[A-Za-z0-9._~/-]*)?$")
_PORT = re.compile(r"^[0-9]{1,5}$")


class AddressError(ValueError):
    """`text` is not a server address; the message is the reason, to follow the value."""


@dataclass(frozen=True)
class ServerAddress:
    scheme: str  # "", "http" or "https"
    host: str  # a DNS name, an IPv4 address, or an IPv6 address (without brackets)
    port: int | None
    path: str

    @property
    def connect_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.scheme]

    @property
    def display(self) -> str:
        """host:port as one would type it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.connect_port}"

    @property
    def url(self) -> str:
        """The URL the agent calls: the scheme as written; none: https on 443, else http."""
        scheme = self.scheme or ("https" if self.connect_port == 443 else "http")
        return f"{scheme}://{self.display}{self.path.rstrip('/')}"


def _host_problem(host: str) -> str | None:
    if not host:
        return "no host name"
    if len(host) > MAX_HOST_LENGTH:
        return f"a host name of {len(host)} characters (at most {MAX_HOST_LENGTH})"
    labels = host.rstrip(".").split(".") if host != "." else [""]
    if labels[-1].isdigit():
        # All-numeric last label: a dotted quad, or nothing (RFC 1123 section 2.1).
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{host} is not an IPv4 address: four numbers 0-255, like 192.0.2.10"
        return None
    for label in labels:
        if not _LABEL.match(label):
            return (
                "a host name is letters, digits and '-' in dot-separated labels (at most 63 each)"
            )
    return None


def parse_server(text: str) -> ServerAddress:
    """The address in `text`, or AddressError saying what is wrong with it."""
    if len(text) > MAX_SERVER_LENGTH:
        raise AddressError(f"{len(text)} characters; at most {MAX_SERVER_LENGTH}")
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        raise AddressError("empty, or spaces or control characters")
    scheme = ""
    rest = text
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if match:
        scheme = match.group(1).lower()
        if scheme not in ("http", "https"):
            raise AddressError(f"scheme {scheme}://; use http://, https:// or none")
        rest = text[match.end() :]
    try:
        split = urlsplit("//" + rest)
    except ValueError:  # e.g. a '[' that urlsplit cannot pair
        raise AddressError("brackets that do not hold an IPv6 address") from None
    if split.query or split.fragment or "@" in split.netloc:
        raise AddressError("a user, query or # part; give only host, port and path")
    if not _PATH.match(split.path):
        raise AddressError("a path with characters other than letters, digits, ._~/-")
    netloc = split.netloc
    port_text: str | None = None
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise AddressError("an IPv6 address opened with '[' but not closed")
        host = netloc[1:end]
        after = netloc[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressError(f"[{host}] is not an IPv6 address") from None
        if after:
            if not after.startswith(":"):
                raise AddressError("text after the IPv6 address that is not :port")
            port_text = after[1:]
    else:
        host, colon, port_part = netloc.partition(":")
        if colon:
            if ":" in port_part:
                raise AddressError(
                    "more than one ':'; write an IPv6 address in brackets, [::1]:443"
                )
            port_text = port_part
        problem = _host_problem(host)
        if problem:
            raise AddressError(problem)
    port: int | None = None
    if port_text is not None:
        if not _PORT.match(port_text) or not 1 <= int(port_text) <= 65535:
            raise AddressError(f"port {port_text!r}; a port is a number 1-65535")
        port = int(port_text)
    return ServerAddress(scheme, host, port, split.path)


def server_problem(text: str) -> str | None:
    """Why `text` is not a server address (None: it is one)."""
    try:
        parse_server(text)
    except AddressError as exc:
        return str(exc)
    return None


def unreachable(address: ServerAddress, timeout: float = CONNECT_TIMEOUT_SECONDS) -> str | None:
    """Why a TCP connection to `address` failed within `timeout` (None: it answered)."""
    try:
        with socket.create_connection((address.host, address.connect_port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except socket.gaierror as exc:
        return f"the name {address.host} does not resolve: {exc.strerror}"
    except OSError as exc:
        return exc.strerror or str(exc)
