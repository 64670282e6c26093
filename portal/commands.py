"""`datashare portal`, `datashare users …` and `datashare tokens …` (registered by the CLI)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

users_app = typer.Typer(help="Portal accounts (add, disable, enable, reset, list).")
tokens_app = typer.Typer(help="API tokens of the portal (add, revoke, list).")


def register(
    app: typer.Typer, *, settings: Callable[[], Any], guarded: Callable[[Callable[[], Any]], Any]
) -> None:
    """Add the portal's commands to the datashare CLI."""

    def _engine() -> Any:
        from warehouse.db import connect, upgrade

        engine = connect(str(settings().warehouse_url))
        upgrade(engine)
        return engine

    def _write(fn: Callable[[Any], Any]) -> Any:
        from warehouse.portal_store import AccountError

        def go() -> Any:
            engine = _engine()
            try:
                with engine.begin() as conn:
                    return fn(conn)
            except AccountError as exc:
                typer.echo(f"错误：{exc}", err=True)
                raise typer.Exit(2) from None
            finally:
                engine.dispose()

        return guarded(go)

    def _password(from_stdin: bool) -> str:
        from portal.security import password_problem

        if from_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = typer.prompt("密码", hide_input=True, confirmation_prompt=True)
        problem = password_problem(password)
        if problem:
            typer.echo(f"错误：{problem}", err=True)
            raise typer.Exit(2)
        return password

    @app.command()
    def portal(
        host: Annotated[
            str | None, typer.Option(help="Listen address (default: settings).")
        ] = None,
        port: Annotated[int | None, typer.Option(help="Port (default: settings, 8080).")] = None,
    ) -> None:
        """Run the department portal (web pages and API) until interrupted."""
        import uvicorn

        from portal.app import create_app
        from portal.config import portal_config

        s = settings()
        config = guarded(lambda: portal_config(s))
        where = f"http://{host or s.portal_host}:{port or s.portal_port}"
        typer.echo(f"门户已在 {where} 运行（生产环境请置于 TLS 反向代理之后）；按 Ctrl+C 停止")
        uvicorn.run(
            create_app(config),
            host=host or s.portal_host,
            port=port or s.portal_port,
            proxy_headers=True,
            forwarded_allow_ips="127.0.0.1",
            log_level="warning",
        )

    @users_app.command("add")
    def users_add(
        username: str,
        consumer: Annotated[str, typer.Option(help="XC, MZ … GA.")],
        role: Annotated[str, typer.Option(help="department | bureau | admin.")] = "department",
        name: Annotated[str, typer.Option(help="Display name (Chinese).")] = "",
        password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
    ) -> None:
        """Add an account that belongs to one consumer."""
        from portal.security import hash_password
        from warehouse import portal_store as store
        from warehouse.publish import PUBLIC, default_access

        consumer = consumer.upper()
        if consumer not in default_access().consumers or consumer == PUBLIC:
            typer.echo(f"错误：未知的部门代码 {consumer}", err=True)
            raise typer.Exit(2)
        if role in ("bureau", "admin") and consumer != "XC":
            typer.echo("错误：乡村振兴局工作人员和管理员账号须属于 XC", err=True)
            raise typer.Exit(2)
        hashed = hash_password(_password(password_stdin))
        _write(
            lambda c: store.add_account(
                c,
                username=username,
                consumer=consumer,
                role=role,
                display_name=name or username,
                password_hash=hashed,
                at=datetime.now(UTC),
            )
        )
        typer.echo(f"已添加账号 {username}（{consumer}，{role}）")

    @users_app.command("disable")
    def users_disable(username: str) -> None:
        """Disable an account (its sessions end at once)."""
        from warehouse import portal_store as store

        _write(lambda c: store.set_active(c, username, False, datetime.now(UTC)))
        typer.echo(f"已停用账号 {username}")

    @users_app.command("enable")
    def users_enable(username: str) -> None:
        """Enable a disabled account again."""
        from warehouse import portal_store as store

        _write(lambda c: store.set_active(c, username, True, datetime.now(UTC)))
        typer.echo(f"已启用账号 {username}")

    @users_app.command("reset")
    def users_reset(
        username: str,
        password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
    ) -> None:
        """Set a new password (unlocks the account, ends its sessions)."""
        from portal.security import hash_password
        from warehouse import portal_store as store

        hashed = hash_password(_password(password_stdin))
        _write(lambda c: store.reset_password(c, username, hashed, datetime.now(UTC)))
        typer.echo(f"已重置账号 {username} 的密码")

    @users_app.command("list")
    def users_list() -> None:
        """List the accounts (no hashes)."""
        from sqlalchemy import select

        from warehouse.tables_portal import portal_users as u

        def show(c: Any) -> None:
            for r in c.execute(
                select(u.c.username, u.c.consumer, u.c.role, u.c.active).order_by(u.c.username)
            ):
                typer.echo(
                    f"{r.username}\t{r.consumer}\t{r.role}\t{'启用' if r.active else '已停用'}"
                )

        _write(show)

    @tokens_app.command("add")
    def tokens_add(
        consumer: Annotated[str, typer.Option(help="XC, MZ … GA.")],
        name: Annotated[str, typer.Option(help="What the token is for.")],
    ) -> None:
        """Issue an API token for a consumer; it is shown once, only its hash is kept."""
        from portal.security import new_api_token
        from warehouse import portal_store as store
        from warehouse.publish import PUBLIC, default_access

        consumer = consumer.upper()
        if consumer not in default_access().consumers or consumer == PUBLIC:
            typer.echo(f"错误：未知的部门代码 {consumer}", err=True)
            raise typer.Exit(2)
        token_id, token, digest = new_api_token()
        _write(
            lambda c: store.add_token(
                c,
                token_id=token_id,
                consumer=consumer,
                name=name,
                secret_sha256=digest,
                created_by="cli",
                at=datetime.now(UTC),
            )
        )
        typer.echo(token)

    @tokens_app.command("revoke")
    def tokens_revoke(token_id: str) -> None:
        """Revoke a token (by its id, the part after dsp_)."""
        from warehouse import portal_store as store

        _write(lambda c: store.revoke_token(c, token_id, datetime.now(UTC)))
        typer.echo(f"已吊销令牌 {token_id}")

    @tokens_app.command("list")
    def tokens_list() -> None:
        """List the tokens (ids, consumers, names; never the secret)."""
        from warehouse import portal_store as store

        def show(c: Any) -> None:
            for t in store.list_tokens(c):
                state = "已吊销" if t.revoked_at else "有效"
                typer.echo(f"{t.token_id}\t{t.consumer}\t{state}\t{t.name}")

        _write(show)

    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")
