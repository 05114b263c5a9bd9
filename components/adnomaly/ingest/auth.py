"""Bearer-token authentication for the ingest API (pure decisions, no I/O).

Tokens come from `ADNOMALY_INGEST_TOKENS` (comma or newline separated). Several may be valid at once, so a
token is rotated without downtime: add the new one, move clients over, remove the old one. A presented token
is compared in constant time against every configured token (no early exit), and no token, presented or
configured, is ever logged or echoed in a response.
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Iterable

_SEPARATORS = re.compile(r"[,\n\r]+")
_SCHEME = b"bearer"


class AuthResult(enum.Enum):
    OK = "ok"
    MISSING = "missing"  # no Authorization header: 401
    MALFORMED = "malformed"  # not `Bearer <token>`: 401
    FORBIDDEN = "forbidden"  # a well-formed token that is not valid: 403


def parse_tokens(text: str | None) -> tuple[bytes, ...]:
    """The tokens in `text` (comma or newline separated, surrounding blanks ignored), in order, deduplicated."""
    if not text:
        return ()
    seen: dict[bytes, None] = {}
    for part in _SEPARATORS.split(text):
        token = part.strip()
        if not token:
            continue
        if any(ch.isspace() for ch in token):
            raise ValueError("an ingest token must not contain whitespace")
        seen[token.encode()] = None
    return tuple(seen)


class TokenSet:
    """The valid tokens; `check` decides what to answer for one Authorization header value."""

    def __init__(self, tokens: Iterable[bytes | str]) -> None:
        self._tokens = tuple(t.encode() if isinstance(t, str) else t for t in tokens)
        if not self._tokens or not all(self._tokens):
            raise ValueError("the ingest API needs at least one non-empty token")

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:  # never show the tokens themselves
        return f"TokenSet({len(self._tokens)} tokens)"

    def check(self, authorization: bytes | None) -> AuthResult:
        """`authorization` is the raw header value (None when absent)."""
        if authorization is None:
            return AuthResult.MISSING
        scheme, _, token = authorization.strip().partition(b" ")
        token = token.strip()
        if scheme.lower() != _SCHEME or not token or b" " in token:
            return AuthResult.MALFORMED
        valid = False
        for candidate in self._tokens:  # every token, always: time does not reveal which one matched
            valid |= hmac.compare_digest(candidate, token)
        return AuthResult.OK if valid else AuthResult.FORBIDDEN
