"""Reading and writing the portal's accounts, login records and API tokens.

Lockout: after LOCK_AFTER consecutive failed logins an account is locked for LOCK_MINUTES;
a client address with THROTTLE_PER_CLIENT failures within THROTTLE_MINUTES is refused until
the window passes (the record of every attempt is portal_logins).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, insert, select, update

from datashare.errors import AccountError  # re-exported: old import path
from warehouse.tables_portal import ROLES, portal_logins, portal_tokens, portal_users

LOCK_AFTER = 5
LOCK_MINUTES = 15
THROTTLE_PER_CLIENT = 20
THROTTLE_MINUTES = 15


@dataclass(frozen=True)
class Account:
    username: str
    consumer: str
    role: str
    display_name: str
    password_hash: str
    active: bool
    failed_logins: int
    locked_until: datetime | None
    session_version: int


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    from datetime import UTC

    return value.replace(tzinfo=UTC)  # SQLite returns naive datetimes; we store UTC


def get_account(conn: Connection, username: str) -> Account | None:
    row = conn.execute(select(portal_users).where(portal_users.c.username == username)).first()
    if row is None:
        return None
    m = row._mapping
    return Account(
        username=m["username"],
        consumer=m["consumer"],
        role=m["role"],
        display_name=m["display_name"],
        password_hash=m["password_hash"],
        active=bool(m["active"]),
        failed_logins=int(m["failed_logins"]),
        locked_until=_aware(m["locked_until"]),
        session_version=int(m["session_version"]),
    )


def add_account(
    conn: Connection,
    *,
    username: str,
    consumer: str,
    role: str,
    display_name: str,
    password_hash: str,
    at: datetime,
) -> None:
    if role not in ROLES:
        raise AccountError(f"角色须为 {' / '.join(ROLES)}")
    if get_account(conn, username) is not None:
        raise AccountError(f"账号 {username} 已存在")
    conn.execute(
        insert(portal_users).values(
            username=username,
            consumer=consumer,
            role=role,
            display_name=display_name,
            password_hash=password_hash,
            active=True,
            failed_logins=0,
            locked_until=None,
            session_version=1,
            created_at=at,
            updated_at=at,
        )
    )


def set_active(conn: Connection, username: str, active: bool, at: datetime) -> None:
    """Disable (or enable) an account; disabling ends its sessions."""
    account = get_account(conn, username)
    if account is None:
        raise AccountError(f"账号 {username} 不存在")
    conn.execute(
        update(portal_users)
        .where(portal_users.c.username == username)
        .values(active=active, session_version=account.session_version + 1, updated_at=at)
    )


def reset_password(conn: Connection, username: str, password_hash: str, at: datetime) -> None:
    """A new password; unlocks the account and ends its sessions."""
    account = get_account(conn, username)
    if account is None:
        raise AccountError(f"账号 {username} 不存在")
    conn.execute(
        update(portal_users)
        .where(portal_users.c.username == username)
        .values(
            password_hash=password_hash,
            failed_logins=0,
            locked_until=None,
            session_version=account.session_version + 1,
            updated_at=at,
        )
    )


def client_throttled(conn: Connection, client: str, at: datetime) -> bool:
    """Too many failed logins from this address recently."""
    since = at - timedelta(minutes=THROTTLE_MINUTES)
    lg = portal_logins.c
    failures = conn.execute(
        select(func.count())
        .select_from(portal_logins)
        .where(lg.client == client[:64], lg.at >= since, lg.success.is_(False))
    ).scalar_one()
    return int(failures) >= THROTTLE_PER_CLIENT


def record_login(
    conn: Connection, *, username: str, client: str, success: bool, reason: str, at: datetime
) -> None:
    """Record an attempt; count failures against the account and lock it when due."""
    conn.execute(
        insert(portal_logins).values(
            at=at, username=username[:64], client=client[:64], success=success, reason=reason
        )
    )
    account = get_account(conn, username)
    if account is None or reason == "locked":
        return
    if success:
        values: dict[str, object] = {"failed_logins": 0, "locked_until": None}
    else:
        failed = account.failed_logins + 1
        values = {"failed_logins": failed}
        if failed >= LOCK_AFTER:
            values |= {"locked_until": at + timedelta(minutes=LOCK_MINUTES), "failed_logins": 0}
    conn.execute(update(portal_users).where(portal_users.c.username == username).values(**values))


@dataclass(frozen=True)
class Token:
    token_id: str
    consumer: str
    name: str
    secret_sha256: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def add_token(
    conn: Connection,
    *,
    token_id: str,
    consumer: str,
    name: str,
    secret_sha256: str,
    created_by: str,
    at: datetime,
) -> None:
    conn.execute(
        insert(portal_tokens).values(
            token_id=token_id,
            consumer=consumer,
            name=name,
            secret_sha256=secret_sha256,
            created_by=created_by,
            created_at=at,
        )
    )


def get_token(conn: Connection, token_id: str) -> Token | None:
    row = conn.execute(select(portal_tokens).where(portal_tokens.c.token_id == token_id)).first()
    if row is None:
        return None
    m = row._mapping
    return Token(
        token_id=m["token_id"],
        consumer=m["consumer"],
        name=m["name"],
        secret_sha256=m["secret_sha256"],
        created_by=m["created_by"],
        created_at=_aware(m["created_at"]) or m["created_at"],
        revoked_at=_aware(m["revoked_at"]),
        last_used_at=_aware(m["last_used_at"]),
    )


def list_tokens(conn: Connection, consumer: str | None = None) -> list[Token]:
    query = select(portal_tokens.c.token_id).order_by(portal_tokens.c.created_at)
    if consumer is not None:
        query = query.where(portal_tokens.c.consumer == consumer)
    return [t for (tid,) in conn.execute(query) if (t := get_token(conn, tid)) is not None]


def revoke_token(conn: Connection, token_id: str, at: datetime) -> None:
    if get_token(conn, token_id) is None:
        raise AccountError(f"令牌 {token_id} 不存在")
    conn.execute(
        update(portal_tokens).where(portal_tokens.c.token_id == token_id).values(revoked_at=at)
    )


def touch_token(conn: Connection, token_id: str, at: datetime) -> None:
    conn.execute(
        update(portal_tokens).where(portal_tokens.c.token_id == token_id).values(last_used_at=at)
    )
