"""Bearer tokens: random secrets handed out once and stored only as their SHA-256.

A token is 32 random bytes as 64 hex digits (never starting with "-", so `--token T` always
parses). The database keeps `token_digest(token)`; a
presented token is hashed and looked up, then compared with `hmac.compare_digest`, so neither
the database nor a log ever holds a token in clear.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


class TokenRole(enum.StrEnum):
    ADMIN = "admin"  # the operator: every API call
    COMPUTER = "computer"  # one Engine computer: its own check-in, status and downloads
    SITE = "site"  # one remote server: its contact, its relays, kit downloads, forwarding


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def digest_matches(token: str, digest: str) -> bool:
    return hmac.compare_digest(token_digest(token), digest)
