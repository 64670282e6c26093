"""The portal's configuration, built from Settings at the edge (the CLI)."""

from __future__ import annotations

import secrets
from pathlib import Path

from datashare.errors import ConfigurationError
from datashare.settings import Settings
from portal.app import PortalConfig
from warehouse.db import connect, upgrade

MIN_SESSION_SECRET = 32


def session_secret(settings: Settings) -> str:
    """The cookie-signing key: required in production; the demo and tests keep one under HOME."""
    given = settings.portal_session_secret
    if given is not None and given.get_secret_value():
        value = given.get_secret_value()
        if settings.environment == "production" and len(value) < MIN_SESSION_SECRET:
            raise ConfigurationError(
                f"DATASHARE_PORTAL_SESSION_SECRET 太短（生产环境至少 {MIN_SESSION_SECRET} 字符）"
            )
        return value
    if settings.environment == "production":
        raise ConfigurationError(
            "DATASHARE_PORTAL_SESSION_SECRET 未设置：门户无法签发登录凭据。请设为足够长的随机值"
            "（例如 python3 -c 'import secrets; print(secrets.token_hex(32))'），重启后保持不变"
        )
    key_file = settings.home / "portal_session.key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def portal_config(settings: Settings) -> PortalConfig:
    """Everything create_app needs; the warehouse is brought to the newest revision."""
    engine = connect(str(settings.warehouse_url))
    upgrade(engine)
    secure = settings.portal_cookie_secure
    if secure is None:
        secure = settings.environment == "production"
    return PortalConfig(
        engine=engine,
        publish_dir=Path(str(settings.publish_dir)),
        secret=settings.person_key_secret(),
        session_secret=session_secret(settings),
        cookie_secure=secure,
        gx_root=settings.home / "gx",
    )
