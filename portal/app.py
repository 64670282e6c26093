"""The portal's web application: pages in Chinese for people, JSON and files for programs.

Over 600 lines on purpose: it is the one list of routes, each a few lines over portal.data,
with the session and CSRF checks they share; the data access itself is in portal.data.

    create_app(config)    a FastAPI application over one warehouse and one publication folder

Every route that shows data takes the consumer from the session (or the API token), never from
the URL, and reads through portal.data (apply_access for that consumer). A table, alert, reject
or delivery the consumer may not see answers 404, exactly as one that does not exist.
"""

import contextlib
import hashlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import pyarrow.parquet as pq
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection, Engine
from starlette.types import Receive, Scope, Send

from domain import labels
from portal import data
from portal.security import (
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    Session,
    SessionSigner,
    check_password,
    csrf_matches,
    new_csrf,
    split_api_token,
    token_digest,
)
from tasks.alerts import read_feedback
from tasks.mask import mask_series
from warehouse import portal_store as store
from warehouse import published as files
from warehouse.publish import table_def
from warehouse.publish.people import for_people
from warehouse.tables_portal import (
    OUTCOMES,
    apply_alert_status,
    record_access,
    record_opinion,
    record_verification,
)

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
FORMATS = {"xlsx", "csv", "parquet"}
_MEDIA = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
STATUS_LABEL = labels.ALERT_STATUS  # the templates' name for it
ROLE_LABEL = {"department": "部门工作人员", "bureau": "乡村振兴局工作人员", "admin": "管理员"}
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


@dataclass(frozen=True)
class PortalConfig:
    """What the application needs, as plain values (built from Settings at the edge)."""

    engine: Engine
    publish_dir: Path
    secret: bytes  # person_key HMAC key (apply_access recomputes keys)
    session_secret: str
    cookie_secure: bool = True
    gx_root: Path | None = None


@dataclass(frozen=True)
class User:
    username: str
    consumer: str
    role: str
    display_name: str

    @property
    def bureau(self) -> bool:
        return self.consumer == "XC" and self.role in ("bureau", "admin")


def _now() -> datetime:
    return datetime.now(UTC)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def create_app(config: PortalConfig) -> FastAPI:
    """The portal application (pages, API, static files)."""
    app = FastAPI(
        title="datashare 部门门户 API",
        version="1",
        docs_url=None,  # FastAPI's pages load Swagger/ReDoc from a CDN: /api/docs instead
        redoc_url=None,
        openapi_url="/api/openapi.json",
        description=(
            "各部门按访问矩阵获取共享数据表、预警和问题数据。认证：Authorization: Bearer <令牌>。"
        ),
    )
    src = data.Source(config.publish_dir, config.secret, config.gx_root)
    signer = SessionSigner(config.session_secret)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(
        STATUS_LABEL=STATUS_LABEL, ROLE_LABEL=ROLE_LABEL, COLUMN_TYPE=labels.COLUMN_TYPE
    )
    # Codes become Chinese where a person reads them (domain.labels); links keep the codes.
    templates.env.filters["label"] = _label
    templates.env.filters["header"] = _header
    templates.env.filters["table_title"] = labels.table_title
    templates.env.filters["ymd"] = _ymd
    templates.env.filters["pct"] = _pct
    templates.env.filters["cell"] = _cell
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    engine = config.engine

    def conn() -> Iterator[Connection]:
        with engine.connect() as c:
            yield c

    Conn = Annotated[Connection, Depends(conn)]

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        session = signer.load(cookie)
        fresh = session is None
        request.state.session = session or Session(None, 0, new_csrf())
        request.state.set_session = None
        response: Response = await call_next(request)
        chosen = request.state.set_session
        if chosen is not None or (fresh and not request.url.path.startswith(("/static", "/api"))):
            response.set_cookie(
                SESSION_COOKIE,
                signer.dump(chosen or request.state.session),
                max_age=SESSION_MAX_AGE,
                httponly=True,
                samesite="lax",
                secure=config.cookie_secure,
                path="/",
            )
        # The reports are self-contained HTML (inline styles and SVG charts) made by tasks.reports.
        report = request.url.path.startswith("/reports/")
        response.headers["Content-Security-Policy"] = (
            CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'") if report else CSP
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        if not request.url.path.startswith("/static"):
            response.headers["Cache-Control"] = "no-store"
        return response

    # --- who is asking --------------------------------------------------------------------

    def current_user(request: Request, c: Conn) -> User:
        session: Session = request.state.session
        if session.username is None:
            raise _LoginRequired()
        account = store.get_account(c, session.username)
        if account is None or not account.active or account.session_version != session.version:
            raise _LoginRequired()
        return User(account.username, account.consumer, account.role, account.display_name)

    def bureau_user(user: Annotated[User, Depends(current_user)]) -> User:
        if not user.bureau:
            raise HTTPException(404)
        return user

    def api_consumer(request: Request, c: Conn) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        parts = split_api_token(token) if scheme.lower() == "bearer" else None
        found = store.get_token(c, parts[0]) if parts else None
        if (
            parts is None
            or found is None
            or found.revoked_at is not None
            or not csrf_matches(found.secret_sha256, token_digest(parts[1]))
        ):
            raise HTTPException(401, "需要有效的 API 令牌", {"WWW-Authenticate": "Bearer"})
        with engine.begin() as w:
            store.touch_token(w, found.token_id, _now())
        request.state.actor = f"token:{found.token_id}"
        return found.consumer

    def check_csrf(request: Request, token: str | None) -> None:
        if not csrf_matches(request.state.session.csrf, token):
            raise HTTPException(403, "表单已失效（缺少或错误的校验码），请刷新页面后重试")

    UserDep = Annotated[User, Depends(current_user)]
    BureauDep = Annotated[User, Depends(bureau_user)]
    ApiDep = Annotated[str, Depends(api_consumer)]

    def page(request: Request, name: str, user: User | None, **context: Any) -> HTMLResponse:
        context |= {"user": user, "csrf": request.state.session.csrf, "path": request.url.path}
        return templates.TemplateResponse(request, name, context)

    @app.exception_handler(_LoginRequired)
    async def login_required(request: Request, exc: _LoginRequired) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {"detail": exc.detail if exc.status_code != 404 else "未找到"},
                status_code=exc.status_code,
                headers=exc.headers,
            )
        message = {404: "未找到，或您无权查看。", 401: "请先登录。"}.get(
            exc.status_code, str(exc.detail)
        )
        response = templates.TemplateResponse(
            request,
            "error.html",
            {"user": None, "message": message, "csrf": request.state.session.csrf, "path": ""},
            status_code=exc.status_code,
        )
        return response

    # --- login --------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request) -> HTMLResponse:
        return page(request, "login.html", None, error=None)

    @app.post("/login", response_class=HTMLResponse, include_in_schema=False)
    def login(
        request: Request,
        c: Conn,
        username: Annotated[str, Form(max_length=200)] = "",
        password: Annotated[str, Form(max_length=500)] = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        check_csrf(request, csrf)
        at, client = _now(), _client(request)
        username = username.strip()
        account = store.get_account(c, username)
        c.rollback()
        with engine.begin() as w:
            if store.client_throttled(w, client, at):
                store.record_login(
                    w, username=username, client=client, success=False, reason="throttled", at=at
                )
                reason = "throttled"
            elif account is not None and account.locked_until and account.locked_until > at:
                check_password(None, password)  # same work as a real check
                store.record_login(
                    w, username=username, client=client, success=False, reason="locked", at=at
                )
                reason = "locked"
            else:
                ok = check_password(account.password_hash if account else None, password)
                if ok and account is not None and not account.active:
                    reason = "disabled"
                elif ok and account is not None:
                    reason = "ok"
                else:
                    reason = "unknown" if account is None else "bad_password"
                store.record_login(
                    w,
                    username=username,
                    client=client,
                    success=reason == "ok",
                    reason=reason,
                    at=at,
                )
        if reason != "ok" or account is None:
            message = {
                "throttled": "登录尝试过多，请 15 分钟后再试。",
                "locked": "连续登录失败次数过多，账号已临时锁定 15 分钟。",
            }.get(reason, "账号或密码错误。")
            response = page(request, "login.html", None, error=message)
            response.status_code = 429 if reason == "throttled" else 401
            return response
        request.state.set_session = Session(account.username, account.session_version, new_csrf())
        return RedirectResponse("/", status_code=303)

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf: Annotated[str | None, Form()] = None) -> Response:
        check_csrf(request, csrf)
        request.state.set_session = Session(None, 0, new_csrf())
        return RedirectResponse("/login", status_code=303)

    # --- pages for every department -------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def home(user: UserDep) -> Response:
        return RedirectResponse("/night", status_code=303)

    @app.get("/night", response_class=HTMLResponse, include_in_schema=False)
    def night_page(request: Request, user: UserDep, c: Conn) -> HTMLResponse:
        found = data.night(src, c, user.consumer)
        return page(request, "night.html", user, night=found, chart=_trend_svg(found["trend"]))

    @app.get("/data", response_class=HTMLResponse, include_in_schema=False)
    def data_page(request: Request, user: UserDep, version: str | None = None) -> HTMLResponse:
        found = data.catalog(src, user.consumer, version)
        if version is not None and found is None:
            raise HTTPException(404)
        return page(
            request,
            "data.html",
            user,
            catalog=found,
            versions=data.versions(src, user.consumer),
            version=version,
        )

    @app.get("/data/{table}", response_class=HTMLResponse, include_in_schema=False)
    def table_page(
        request: Request,
        table: str,
        user: UserDep,
        version: str | None = None,
        page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    ) -> HTMLResponse:
        found = data.table_entry(src, user.consumer, table, version)
        if found is None:
            raise HTTPException(404)
        cat, entry = found
        try:
            rows = data.preview(src, cat, entry, (page_no - 1) * data.PAGE_SIZE, data.PAGE_SIZE)
        except FileNotFoundError:  # the version was pruned since its catalog was read
            raise HTTPException(404) from None
        return page(
            request,
            "table.html",
            user,
            catalog=cat,
            entry=entry,
            rows=_for_people(entry["table"], rows).to_dict("records"),
            page_no=page_no,
            pages=max(1, -(-int(entry["rows"]) // data.PAGE_SIZE)),
            version=version,
            versions=data.versions(src, user.consumer),
        )

    def serve_table(
        consumer: str, actor: str, table: str, fmt: str, version: str | None
    ) -> Response:
        if fmt not in FORMATS:
            raise HTTPException(404)
        found = data.table_entry(src, consumer, table, version)
        if found is None:
            raise HTTPException(404)
        cat, entry = found
        # The publication is held from here until the last byte is sent (or the client goes):
        # the retention's pruning after a night's switch never removes it under this reader.
        release = contextlib.ExitStack()
        try:
            try:
                release.enter_context(files.hold(src.publish_dir, cat["publication_id"]))
            except FileNotFoundError:  # pruned since its catalog was read
                raise HTTPException(404) from None
            path = data.table_file(src, cat, entry, fmt)
            if not path.is_file():
                path = _convert(src, cat, entry, fmt)
                release.callback(shutil.rmtree, path.parent, ignore_errors=True)
            digest = _sha256(path)
            with engine.begin() as w:
                record_access(
                    w,
                    at=_now(),
                    actor=actor,
                    action="download",
                    consumer=consumer,
                    obj=f"{cat['publication_id']}/{consumer}/{table}.{fmt}",
                    rows=int(entry["rows"]),
                    sha256=digest,
                    personal=str(entry.get("personal", "none")),
                )
            name = f"{consumer}_{table}_{str(cat['exchange_date']).replace('-', '')}.{fmt}"
            return HeldFileResponse(path, release, media_type=_MEDIA[fmt], filename=name)
        except BaseException:
            release.close()
            raise

    @app.get("/data/{table}/download", include_in_schema=False)
    def download_page(
        table: str, user: UserDep, format: str = "xlsx", version: str | None = None
    ) -> Response:
        return serve_table(user.consumer, f"portal:{user.username}", table, format, version)

    @app.get("/problems", response_class=HTMLResponse, include_in_schema=False)
    def problems_page(
        request: Request,
        user: UserDep,
        c: Conn,
        dataset: str | None = None,
        exchange_date: str | None = None,
        column: str | None = None,
        rule: str | None = None,
        page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    ) -> HTMLResponse:
        flt = data.RejectFilter(dataset or None, _date(exchange_date), column or None, rule or None)
        rows, total, ids = data.problems(src, c, user.consumer, flt, (page_no - 1) * data.PAGE_SIZE)
        return page(
            request,
            "problems.html",
            user,
            rows=rows.to_dict("records"),
            total=total,
            ids={f"{k[0]}|{k[1]}|{k[2]}": v for k, v in ids.items()},
            flt=flt,
            choices=data.problem_choices(src, c, user.consumer),
            page_no=page_no,
            pages=max(1, -(-total // data.PAGE_SIZE)),
            query=_query(dataset=dataset, exchange_date=exchange_date, column=column, rule=rule),
        )

    @app.get("/problems/download", include_in_schema=False)
    def problems_download(
        user: UserDep,
        c: Conn,
        dataset: str | None = None,
        exchange_date: str | None = None,
        column: str | None = None,
        rule: str | None = None,
    ) -> Response:
        flt = data.RejectFilter(dataset or None, _date(exchange_date), column or None, rule or None)
        rows, _, _ = data.problems(src, c, user.consumer, flt, 0, None)
        body = _xlsx(rows, "rejects", "问题数据")
        digest = hashlib.sha256(body).hexdigest()
        with engine.begin() as w:
            record_access(
                w,
                at=_now(),
                actor=f"portal:{user.username}",
                action="download",
                consumer=user.consumer,
                obj="rejects.xlsx?"
                + _query(dataset=dataset, exchange_date=exchange_date, column=column, rule=rule),
                rows=len(rows),
                sha256=digest,
                personal="masked",
            )
        return Response(
            body,
            media_type=_MEDIA["xlsx"],
            headers={"Content-Disposition": f'attachment; filename="{user.consumer}_rejects.xlsx"'},
        )

    @app.get("/quality/{delivery_id}", response_class=HTMLResponse, include_in_schema=False)
    def quality_page(
        request: Request, delivery_id: str, user: UserDep, c: Conn, row: int | None = None
    ) -> HTMLResponse:
        found = data.delivery(src, c, user.consumer, delivery_id)
        if found is None:
            raise HTTPException(404)
        rows, total, _ = data.problems(
            src, c, user.consumer, data.RejectFilter(delivery_id=delivery_id), 0, 500
        )
        return page(
            request,
            "quality.html",
            user,
            delivery=found,
            rows=rows.to_dict("records"),
            total=total,
            row=row,
        )

    @app.get("/alerts", response_class=HTMLResponse, include_in_schema=False)
    def alerts_page(
        request: Request,
        user: UserDep,
        c: Conn,
        rule_id: str | None = None,
        town: str | None = None,
        village: str | None = None,
        status: str | None = None,
        age: str | None = None,
        page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    ) -> HTMLResponse:
        flt = data.AlertFilter(rule_id or None, town or None, village or None, status or None, age)
        rows, total, as_of = data.alert_list(
            src, c, user.consumer, flt, (page_no - 1) * data.PAGE_SIZE
        )
        records = rows.to_dict("records")
        for r in records:
            r["days_left"] = data.days_left(r["first_raised"], as_of) if as_of else None
        return page(
            request,
            "alerts.html",
            user,
            rows=records,
            total=total,
            as_of=as_of,
            flt=flt,
            choices=data.alert_choices(src, c, user.consumer),
            page_no=page_no,
            pages=max(1, -(-total // data.PAGE_SIZE)),
            query=_query(rule_id=rule_id, town=town, village=village, status=status, age=age),
        )

    @app.get("/alerts/{alert_id}", response_class=HTMLResponse, include_in_schema=False)
    def alert_page(request: Request, alert_id: str, user: UserDep, c: Conn) -> HTMLResponse:
        found = data.alert(src, c, user.consumer, alert_id)
        if found is None:
            raise HTTPException(404)
        row, as_of = found
        return page(
            request,
            "alert.html",
            user,
            alert=row,
            as_of=as_of,
            days_left=data.days_left(row["first_raised"], as_of),
            notes=data.alert_notes(c, user.consumer, alert_id, user.bureau),
            outcomes=OUTCOMES,
            saved=request.query_params.get("saved"),
        )

    @app.post("/alerts/{alert_id}/opinion", include_in_schema=False)
    def alert_opinion(
        request: Request,
        alert_id: str,
        user: UserDep,
        c: Conn,
        opinion: Annotated[str, Form(max_length=2000)] = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        check_csrf(request, csrf)
        if data.alert(src, c, user.consumer, alert_id) is None:
            raise HTTPException(404)
        c.rollback()
        text = opinion.strip()
        if not text:
            raise HTTPException(400, "核实意见不能为空")
        with engine.begin() as w:
            record_opinion(
                w,
                alert_id=alert_id,
                consumer=user.consumer,
                opinion=text,
                recorded_by=user.username,
                at=_now(),
            )
        return RedirectResponse(f"/alerts/{alert_id}?saved=opinion", status_code=303)

    @app.post("/alerts/{alert_id}/verify", include_in_schema=False)
    def alert_verify(
        request: Request,
        alert_id: str,
        user: BureauDep,
        c: Conn,
        outcome: Annotated[str, Form()] = "",
        note: Annotated[str, Form(max_length=2000)] = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        check_csrf(request, csrf)
        if outcome not in OUTCOMES:
            raise HTTPException(400, "请选择核实结果")
        found = data.alert(src, c, user.consumer, alert_id)
        if found is None:
            raise HTTPException(404)
        _, as_of = found
        c.rollback()
        at = _now()
        with engine.begin() as w:
            vid = record_verification(
                w,
                alert_id=alert_id,
                outcome=outcome,
                checked_date=as_of,
                note=note.strip() or None,
                recorded_by=user.username,
                at=at,
            )
            # At once, as the night would: the lifecycle's own status rule over all feedback
            # known on the date shown (XC_HECHA rows and portal verifications alike).
            status = data.status_now(w, alert_id, as_of, read_feedback(w, as_of))
            fb_date = status["feedback_date"]
            apply_alert_status(
                w,
                alert_id=alert_id,
                status=str(status["status"]),
                outcome=None
                if pd.isna(status["feedback_outcome"])
                else str(status["feedback_outcome"]),
                feedback_date=None if pd.isna(fb_date) else pd.Timestamp(fb_date).date(),
                delivery_id=f"portal:{vid}",
            )
            record_access(
                w,
                at=at,
                actor=f"portal:{user.username}",
                action="verify",
                consumer=user.consumer,
                obj=f"alert:{alert_id}:{outcome}",
                rows=1,
                sha256=None,
                personal="none",
            )
        return RedirectResponse(f"/alerts/{alert_id}?saved=verify", status_code=303)

    # --- the bureau -----------------------------------------------------------------------

    @app.get("/bureau", response_class=HTMLResponse, include_in_schema=False)
    def bureau_page(request: Request, user: BureauDep, c: Conn) -> HTMLResponse:
        return page(request, "bureau.html", user, board=data.dashboard(src, c))

    @app.get("/reports", response_class=HTMLResponse, include_in_schema=False)
    def reports_page(request: Request, user: BureauDep) -> HTMLResponse:
        return page(request, "reports.html", user, reports=data.reports(src))

    @app.get("/reports/{name}", include_in_schema=False)
    def report_file(name: str, user: BureauDep) -> Response:
        path = data.report_path(src, name)
        if path is None:
            raise HTTPException(404)
        media = "text/html; charset=utf-8" if path.suffix == ".html" else _MEDIA["xlsx"]
        return FileResponse(path, media_type=media)

    # 一人一档: the id number travels only in a POST body (never in a URL: access logs, browser
    # history and Referer would keep it). GET shows the empty form, whatever its query says.
    @app.get("/lookup", response_class=HTMLResponse, include_in_schema=False)
    def lookup_form(request: Request, user: BureauDep) -> HTMLResponse:
        return page(request, "lookup.html", user, id_number="", found=None, searched=False)

    @app.post("/lookup", response_class=HTMLResponse, include_in_schema=False)
    def lookup_page(
        request: Request,
        user: BureauDep,
        c: Conn,
        id_number: Annotated[str, Form(max_length=64)] = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> HTMLResponse:
        check_csrf(request, csrf)
        wanted = id_number.strip().upper()
        found = None
        if wanted:
            found = data.lookup_person(src, c, wanted)
            c.rollback()
            with engine.begin() as w:
                record_access(
                    w,
                    at=_now(),
                    actor=f"portal:{user.username}",
                    action="lookup",
                    consumer=user.consumer,
                    obj=f"person:{_masked_id(wanted)}",  # never the id itself
                    rows=0 if found is None else 1 + len(found["history"]),
                    sha256=None,
                    personal="plain",
                )
        return page(
            request, "lookup.html", user, id_number=wanted, found=found, searched=bool(wanted)
        )

    # --- API for programs -------------------------------------------------------------------

    @app.get("/api/docs", response_class=HTMLResponse, include_in_schema=False)
    def api_docs(request: Request) -> HTMLResponse:
        return page(request, "api_docs.html", None, spec=app.openapi())

    @app.get("/api/v1/tables", tags=["tables"], summary="我的数据表（当前或指定版本）")
    def api_tables(consumer: ApiDep, version: str | None = None) -> dict[str, Any]:
        found = data.catalog(src, consumer, version)
        if found is None:
            raise HTTPException(404)
        return {
            "publication_id": found["publication_id"],
            "exchange_date": found["exchange_date"],
            "tables": found["tables"],
            "versions": data.versions(src, consumer),
        }

    @app.get("/api/v1/tables/{table}", tags=["tables"], summary="一张表的数据（分页 JSON）")
    def api_table(
        table: str,
        consumer: ApiDep,
        version: str | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        found = data.table_entry(src, consumer, table, version)
        if found is None:
            raise HTTPException(404)
        cat, entry = found
        try:
            rows = data.preview(src, cat, entry, offset, limit)
        except FileNotFoundError:  # the version was pruned since its catalog was read
            raise HTTPException(404) from None
        return {
            "table": table,
            "publication_id": cat["publication_id"],
            "total": entry["rows"],
            "offset": offset,
            "rows": _records(rows),
        }

    @app.get("/api/v1/tables/{table}/download", tags=["tables"], summary="下载表文件")
    def api_download(
        request: Request,
        table: str,
        consumer: ApiDep,
        format: str = "parquet",
        version: str | None = None,
    ) -> Response:
        return serve_table(consumer, request.state.actor, table, format, version)

    @app.get("/api/v1/alerts", tags=["alerts"], summary="推送给我的预警（分页）")
    def api_alerts(
        consumer: ApiDep,
        c: Conn,
        rule_id: str | None = None,
        town: str | None = None,
        village: str | None = None,
        status: str | None = None,
        age: str | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        flt = data.AlertFilter(rule_id, town, village, status, age)
        rows, total, as_of = data.alert_list(src, c, consumer, flt, offset, limit)
        return {"as_of": _iso(as_of), "total": total, "offset": offset, "rows": _records(rows)}

    @app.get("/api/v1/alerts/{alert_id}", tags=["alerts"], summary="一条预警")
    def api_alert(alert_id: str, consumer: ApiDep, c: Conn) -> dict[str, Any]:
        found = data.alert(src, c, consumer, alert_id)
        if found is None:
            raise HTTPException(404)
        return {"as_of": _iso(found[1]), "alert": _records(pd.DataFrame([found[0]]))[0]}

    @app.get("/api/v1/rejects", tags=["rejects"], summary="我的问题数据（分页）")
    def api_rejects(
        consumer: ApiDep,
        c: Conn,
        dataset: str | None = None,
        exchange_date: str | None = None,
        column: str | None = None,
        rule: str | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        flt = data.RejectFilter(dataset, _date(exchange_date), column, rule)
        rows, total, _ = data.problems(src, c, consumer, flt, offset, limit)
        return {"total": total, "offset": offset, "rows": _records(rows)}

    @app.get("/api/v1/deliveries", tags=["deliveries"], summary="我的交换台账（最近 14 天）")
    def api_deliveries(consumer: ApiDep, c: Conn) -> dict[str, Any]:
        found = data.night(src, c, consumer)
        rows = [{k: _iso(v) for k, v in r.items()} for r in found["rows"]]
        return {"as_of": _iso(found["as_of"]), "rows": rows}

    return app


class _LoginRequired(Exception):
    pass


class HeldFileResponse(FileResponse):
    """A file sent while `release` holds what it needs (its publication's hold, a temporary
    copy): released when the response ends, however it ends (sent, client gone, error)."""

    def __init__(self, path: Path, release: contextlib.ExitStack, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release.close()


# --- helpers ---------------------------------------------------------------------------------


def _date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, "日期格式应为 YYYY-MM-DD") from None


def _query(**params: str | None) -> str:
    from urllib.parse import urlencode

    return urlencode({k: v for k, v in params.items() if v})


def _iso(value: Any) -> Any:
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.date().isoformat()
    if isinstance(value, datetime | date):
        return value.isoformat()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        return value.item()
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _iso(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _ymd(value: Any) -> str:
    out = _iso(value)
    return "" if out is None else str(out)[:10]


def _pct(value: Any) -> str:
    if value is None or pd.isna(value):
        return "—"
    return f"{float(value) * 100:.1f}%"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, pd.Timestamp | datetime | date):
        return _ymd(value)
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _label(value: Any, kind: labels.Kind) -> str:
    return "" if value is None else labels.label(kind, str(value))


def _header(column: Any, dataset: Any = None) -> str:
    """A column named in a row (rejects.column) as its Chinese header."""
    if column is None or (isinstance(column, float) and column != column) or column == "":
        return ""
    return labels.header_of(str(dataset) if isinstance(dataset, str) else None, str(column))


def _for_people(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """A page's rows of a published table with its codes as Chinese labels (domain.labels)."""
    columns = {c: [None if pd.isna(v) else v for v in frame[c]] for c in frame.columns}
    changed = labels.labelled(table, columns)
    if not changed:
        return frame
    return frame.assign(
        **{c: pd.Series(v, index=frame.index, dtype=object) for c, v in changed.items()}
    )


def _masked_id(value: str) -> str:
    return str(mask_series(pd.Series([value], dtype="string"), "id").iloc[0])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert(src: data.Source, cat: dict[str, Any], entry: dict[str, Any], fmt: str) -> Path:
    """A format the publication did not write (CSV beside XLSX, or XLSX of a CSV table),
    from the table's Parquet, with the same Chinese headers."""
    table = pq.read_table(data.table_file(src, cat, entry, "parquet"))
    headers = [c["label"] for c in entry["columns"]]
    out = Path(tempfile.mkdtemp(prefix="portal-")) / f"{entry['table']}.{fmt}"
    if fmt == "csv":
        files.write_csv_bom(out, table, headers)
    else:
        people = for_people(entry["table"], table)
        files.write_xlsx(
            out,
            people.data,
            headers,
            sheet=people.sheet,
            created=date.fromisoformat(str(cat["exchange_date"])),
            counts=people.counts,
            note=people.note,
        )
    return out


def _xlsx(frame: pd.DataFrame, table: str, title: str) -> bytes:
    import pyarrow as pa

    tdef = table_def(table)
    names = [c for c in frame.columns if c in tdef.names]
    headers = [tdef.column(c).label for c in names]
    frame = _for_people(table, frame[names])
    arrow = pa.Table.from_pandas(frame, preserve_index=False) if len(frame) else None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.xlsx"
        if arrow is None:
            arrow = pa.table({c: pa.array([], pa.string()) for c in names})
        arrow = arrow.cast(
            pa.schema(
                [
                    pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
                    for f in arrow.schema
                ]
            )
        )
        if "exchange_date" in arrow.column_names:
            i = arrow.column_names.index("exchange_date")
            arrow = arrow.set_column(i, "exchange_date", arrow.column(i).cast(pa.date32()))
        files.write_xlsx(path, arrow, headers, sheet=title, created=date(2000, 1, 1))
        return path.read_bytes()


def _trend_svg(trend: list[dict[str, Any]]) -> str:
    """An inline SVG bar chart of the quarantine rate per night (no script, no CDN)."""
    if not trend:
        return ""
    width, height, pad = 560, 160, 28
    top = max(max(t["rate"] for t in trend), 0.01)
    step = min((width - 2 * pad) / len(trend), 56)  # one night is a bar, not a wall
    bars = []
    for i, t in enumerate(trend):
        h = (height - 2 * pad) * t["rate"] / top
        x = pad + i * step + step * 0.15
        y = height - pad - h
        label = f"{t['exchange_date']:%m-%d}"
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" '
            f'class="bar"><title>{t["exchange_date"]} 问题率 {t["rate"] * 100:.2f}%</title></rect>'
            f'<text x="{x + step * 0.35:.1f}" y="{height - 10}" class="axis">{label}</text>'
            f'<text x="{x + step * 0.35:.1f}" y="{y - 4:.1f}" class="val">'
            f"{t['rate'] * 100:.1f}%</text>"
        )
    return (
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="隔离率趋势" '
        f'class="trend">{"".join(bars)}</svg>'
    )
