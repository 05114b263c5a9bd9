"""Bearer-token authentication for the ingest API.

Tokens come from `ADNOMALY_INGEST_TOKENS` (comma or newline separated) or from the file named by
`ADNOMALY_INGEST_TOKENS_FILE` (same format; on Kubernetes a mounted Secret). Several may be valid at once, so
a token is rotated without downtime: add the new one, move clients over, remove the old one. With a file this
needs no restart: `TokenFile` re-reads it when it changes (checked at most every `interval_s`, on the
request path) or at once on SIGHUP; a file that cannot be read or holds no valid token keeps the previous
tokens (and says so in the log). A presented token is compared in constant time against every configured
token (no early exit), and no token, presented or configured, is ever logged or echoed in a response.
`TokenSet` and `parse_tokens` are pure; `TokenFile` is the thin I/O layer.
"""

from __future__ import annotations

import enum
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

_SEPARATORS = re.compile(r"[,\n\r]+")
_SCHEME = b"bearer"
_log = logging.getLogger(__name__)


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


class TokenFile:
    """The tokens of a file, re-read when it changes: `check` answers with the tokens current at that moment.

    Change detection compares (inode, size, mtime) of the path (following symlinks, so a Kubernetes
    Secret volume's atomic `..data` swap counts), at most every `interval_s`; `request_reload()` (the SIGHUP
    handler) forces a re-read on the next check. The first read must succeed; later bad reads keep the
    tokens in force.
    """

    def __init__(
        self, path: str | Path, *, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._forced = False
        self._stamp = self._stat()
        if self._stamp is None:
            raise ValueError(f"the ingest token file {self.path} cannot be read")
        self._tokens = TokenSet(parse_tokens(self.path.read_text()))
        self._checked_at = clock()
        self.reloads = 0

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r}, {len(self._tokens)} tokens)"

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def request_reload(self) -> None:
        """Re-read the file on the next check whatever its stamp (safe to call from a signal handler)."""
        self._forced = True

    def refresh(self) -> bool:
        """Re-read the file if it changed (or a reload was requested); True when new tokens are in force."""
        with self._lock:
            forced, self._forced = self._forced, False
            self._checked_at = self._clock()
            stamp = self._stat()
            if stamp is None:
                _log.warning("ingest token file %s cannot be read; keeping the %d tokens in force",
                             self.path, len(self._tokens))  # fmt: skip
                return False
            if stamp == self._stamp and not forced:
                return False
            try:
                tokens = TokenSet(parse_tokens(self.path.read_text()))
            except (OSError, ValueError) as exc:  # messages never hold a token
                _log.warning("ingest token file %s rejected (%s); keeping the %d tokens in force",
                             self.path, exc, len(self._tokens))  # fmt: skip
                return False
            self._stamp, self._tokens = stamp, tokens
            self.reloads += 1
            _log.info("ingest tokens reloaded from %s: %d valid tokens", self.path, len(tokens))
            return True

    def check(self, authorization: bytes | None) -> AuthResult:
        if self._forced or self._clock() - self._checked_at >= self.interval_s:
            self.refresh()
        return self._tokens.check(authorization)
