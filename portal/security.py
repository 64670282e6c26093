"""Passwords, signed session cookies, CSRF tokens and API tokens (pure, no database)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "ds_session"
SESSION_MAX_AGE = 8 * 3600  # a working day; then log in again
TOKEN_PREFIX = "dsp"

_hasher = PasswordHasher()  # Argon2id with the library's (OWASP-aligned) defaults
# A hash of a random password: verifying against it costs the same as against a real account,
# so a wrong user name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """Argon2id hash of a password."""
    return _hasher.hash(password)


def check_password(stored_hash: str | None, password: str) -> bool:
    """Whether the password matches the stored hash (constant work when there is none)."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_problem(password: str) -> str | None:
    """Why a new password is refused (Chinese, shown to the person), or None."""
    if len(password) < 10:
        return "密码至少 10 位"
    if password.isdigit() or password.isalpha():
        return "密码须同时包含字母和数字"
    return None


@dataclass(frozen=True)
class Session:
    """What the signed cookie carries: who, which session version, the CSRF token."""

    username: str | None
    version: int
    csrf: str


class SessionSigner:
    """Signs and reads the session cookie (itsdangerous, timestamped: expires server-side)."""

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="datashare-portal-session")

    def dump(self, session: Session) -> str:
        data: dict[str, Any] = {"u": session.username, "v": session.version, "c": session.csrf}
        return self._serializer.dumps(data)

    def load(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=SESSION_MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        user = data.get("u")
        return Session(user if isinstance(user, str) else None, int(data.get("v") or 0), data["c"])


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected, str(given))


def new_api_token() -> tuple[str, str, str]:
    """(token_id, the full token shown once, sha256 of its secret part)."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}", token_digest(secret)


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_api_token(token: str) -> tuple[str, str] | None:
    """(token_id, secret) of a presented token, or None when it is not one of ours."""
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]
