"""Ingest bearer tokens: constant-time comparison by construction, and reloading a token file (rotation)."""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

import pytest
from adnomaly.ingest import auth
from adnomaly.ingest.auth import AuthResult, TokenFile, TokenSet

TOKENS = [f"token-{i}-{'x' * i}" for i in range(5)]
_REAL_COMPARE = hmac.compare_digest


class _SpyCompare:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, a: bytes, b: bytes) -> bool:
        self.calls.append((a, b))
        return _REAL_COMPARE(a, b)


@pytest.mark.parametrize("presented", [TOKENS[0], TOKENS[2], TOKENS[4], "not-a-token", TOKENS[0][:-1]])
def test_every_token_is_compared_with_compare_digest_whatever_matches(
    presented: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _SpyCompare()
    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    tokens = TokenSet(TOKENS)
    result = tokens.check(f"Bearer {presented}".encode())
    # One compare_digest per configured token, in order, always: no early exit on the first match, no `==`.
    assert [configured for configured, _ in spy.calls] == [t.encode() for t in TOKENS]
    assert all(given == presented.encode() for _, given in spy.calls)
    assert result is (AuthResult.OK if presented in TOKENS else AuthResult.FORBIDDEN)


def test_the_check_never_uses_plain_equality_on_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoEq(bytes):
        def __eq__(self, other: object) -> bool:
            raise AssertionError("tokens compared with ==")

        __hash__ = bytes.__hash__

    spy = _SpyCompare()
    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    tokens = TokenSet([NoEq(t.encode()) for t in TOKENS])
    assert tokens.check(f"Bearer {TOKENS[1]}".encode()) is AuthResult.OK
    assert len(spy.calls) == len(TOKENS)


def _write(path: Path, text: str) -> None:
    """Atomic replace, as a Kubernetes Secret volume does (new inode at the same path)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_file_reloads_on_change_after_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    _write(path, "old\n")
    clock = _Clock()
    tokens = TokenFile(path, interval_s=1.0, clock=clock)
    assert tokens.check(b"Bearer old") is AuthResult.OK
    _write(path, "old\nnew\n")
    assert tokens.check(b"Bearer new") is AuthResult.FORBIDDEN  # not looked at before the interval
    clock.now = 1.0
    assert tokens.check(b"Bearer new") is AuthResult.OK  # both valid during rotation
    assert tokens.check(b"Bearer old") is AuthResult.OK
    _write(path, "new")
    clock.now = 2.0
    assert tokens.check(b"Bearer old") is AuthResult.FORBIDDEN
    assert tokens.check(b"Bearer new") is AuthResult.OK
    assert tokens.reloads == 2


def test_sighup_style_request_reloads_at_once(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    _write(path, "a")
    tokens = TokenFile(path, interval_s=3600, clock=_Clock())
    _write(path, "b")
    assert tokens.check(b"Bearer b") is AuthResult.FORBIDDEN
    tokens.request_reload()
    assert tokens.check(b"Bearer b") is AuthResult.OK


def test_a_bad_or_missing_file_keeps_the_tokens_in_force_and_logs_no_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens"
    _write(path, "keep-me-secret")
    clock = _Clock()
    tokens = TokenFile(path, interval_s=0.5, clock=clock)
    caplog.set_level(logging.INFO, logger="adnomaly.ingest.auth")
    for bad in (" , \n", "two words"):
        _write(path, bad)
        clock.now += 1
        assert tokens.check(b"Bearer keep-me-secret") is AuthResult.OK
    path.unlink()
    clock.now += 1
    assert tokens.check(b"Bearer keep-me-secret") is AuthResult.OK
    _write(path, "next-secret")
    clock.now += 1
    assert tokens.check(b"Bearer next-secret") is AuthResult.OK
    assert "keeping the 1 tokens in force" in caplog.text and "reloaded" in caplog.text
    for secret in ("keep-me-secret", "next-secret", "two words"):
        assert secret not in caplog.text
    assert "keep-me-secret" not in repr(tokens) and "next-secret" not in repr(tokens)


def test_token_file_must_be_readable_and_hold_a_token_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be read"):
        TokenFile(tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="at least one"):
        TokenFile(tmp_path / "empty")


def test_entry_point_takes_a_token_file_or_the_env_not_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adnomaly.ingest.__main__ import _tokens

    path = tmp_path / "tokens"
    path.write_text("file-token")
    monkeypatch.setenv("ADNOMALY_INGEST_TOKENS_FILE", str(path))
    monkeypatch.setenv("ADNOMALY_INGEST_TOKENS", "env-token")
    with pytest.raises(SystemExit, match="not both"):
        _tokens()
    monkeypatch.delenv("ADNOMALY_INGEST_TOKENS")
    source = _tokens()
    assert isinstance(source, TokenFile) and source.check(b"Bearer file-token") is AuthResult.OK
