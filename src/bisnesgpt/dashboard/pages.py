"""The dashboard's HTML: sign-in, the four pages, the paths operators know, static files, /docs.

Pages are small HTML shells (``templates/``) filled by the page's script from the JSON
routes, so a page renders the same on first load and from the live stream. Static files
(``static/``, vendored libraries under ``static/vendor/`` with their licences) ship inside
the package and are served with their version in the URL so browsers may cache them.
"""

from __future__ import annotations

import html
import mimetypes
import string
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from bisnesgpt import __version__
from bisnesgpt.api.problems import problem_for
from bisnesgpt.api.rate_limits import api_limits, client_subject
from bisnesgpt.core.crypto import constant_time_equals
from bisnesgpt.core.errors import BisnesgptError, NotFound, TooManyRequests, Unauthorized
from bisnesgpt.dashboard.auth import LOGIN_COOKIE, DashboardSession, SessionAuth, session_auth
from bisnesgpt.processes.context import ProcessContext

PACKAGE_DIR = Path(__file__).parent
TEMPLATES = PACKAGE_DIR / "templates"
STATIC = PACKAGE_DIR / "static"
SWAGGER = "/dashboard/static/vendor/swagger-ui"

# name -> (title, admin only)
PAGES: dict[str, tuple[str, bool]] = {
    "processes": ("Processes", True),
    "queues": ("Queues", True),
    "phones": ("Phones & sessions", False),
    "messages": ("Messages", False),
    "webhooks": ("Webhooks", False),
    "companies": ("Companies & keys", False),
}
# Pages load only their own scripts, styles and images (QR codes included): no inline
# script, no framing (clickjacking), forms post only here.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
# The original system's paths.
LEGACY_PATHS = {"/status": "/dashboard/processes", "/queue": "/dashboard/queues",
                "/meta-status": "/dashboard/phones?type=cloud"}


@cache
def _template(name: str) -> string.Template:
    return string.Template((TEMPLATES / name).read_text(encoding="utf-8"))


def render(name: str, **values: str) -> str:
    """Fill ``$name`` placeholders; callers pass values already escaped (``esc``)."""
    return _template(name).safe_substitute(values, version=quote(__version__))


def esc(value: object) -> str:
    """``value`` as HTML text (None: empty), quotes escaped too (safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _safe_next(target: str | None) -> str:
    """Only paths inside the dashboard (no open redirect to another site)."""
    if target and target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


async def current(ctx: ProcessContext, request: Request) -> tuple[SessionAuth, DashboardSession | None]:
    """The app's session auth and the request's valid session (None: not signed in)."""
    auth = session_auth(request)
    return auth, await auth.session(ctx, request)


def login_page(request: Request, auth: SessionAuth, *, error: str = "", status: int = 200,
               next_path: str = "/dashboard") -> HTMLResponse:
    """The sign-in form (with its double-submit token set as a cookie too), optionally with an error."""
    token = auth.signer.login_token()
    body = render("login.html", csrf=esc(token), error=esc(error), error_hidden="" if error else "hidden",
                  next=esc(_safe_next(next_path)))
    response = HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)
    auth.set_login_cookie(request, response, token)
    return response


def build_pages(ctx: ProcessContext) -> APIRouter:
    """Sign-in and out, the pages, static files, ``/docs`` and the original paths' redirects."""
    router = APIRouter(include_in_schema=False)
    _sign_in_routes(router, ctx)
    _page_routes(router, ctx)
    _asset_routes(router)
    for legacy, target in LEGACY_PATHS.items():
        router.add_api_route(legacy, _redirect_to(target), methods=["GET"], include_in_schema=False)
    return router


def _sign_in_routes(router: APIRouter, ctx: ProcessContext) -> None:
    @router.get("/dashboard/login")
    async def login_form(request: Request, next: str | None = None) -> Response:
        auth, session = await current(ctx, request)
        if session is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        return login_page(request, auth, next_path=next or "/dashboard")

    @router.post("/dashboard/login")
    async def login(request: Request, api_key: Annotated[str, Form(max_length=512)] = "",
                    csrf: Annotated[str, Form(max_length=128)] = "",
                    next: Annotated[str, Form(max_length=512)] = "/dashboard") -> Response:
        auth = session_auth(request)
        limits = api_limits(request)
        subject = client_subject(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        try:
            if not expected or not csrf or not constant_time_equals(csrf, expected):
                return login_page(request, auth, error="The sign-in form expired; please try again.", status=403,
                                  next_path=next)
            auth.check_origin(request)
            await limits.sign_in_allowed(subject)  # backoff after failed sign-ins from this address
            principal, cookie, _expires = await auth.sign_in(request, api_key)
        except Unauthorized:
            wait = await limits.sign_in_failed(subject)
            later = f" Wait {wait:.0f} s before the next try." if wait >= 1 else ""
            return login_page(request, auth, error="That key was not accepted (unknown, revoked, or its company "
                                                   "is disabled)." + later, status=401, next_path=next)
        except TooManyRequests as exc:
            refused = login_page(request, auth, error=exc.detail, status=429, next_path=next)
            refused.headers["Retry-After"] = str(exc.retry_after)
            return refused
        except BisnesgptError as exc:
            return login_page(request, auth, error=exc.detail, status=problem_for(exc).status, next_path=next)
        await limits.sign_in_succeeded(subject)
        await ctx.events.record("dashboard.sign_in", {"kind": principal.kind, "companyId": principal.company_id,
                                                      "keyId": principal.key_id})
        response = RedirectResponse(_safe_next(next), status_code=303)
        auth.set_session_cookie(request, response, cookie)
        response.delete_cookie(LOGIN_COOKIE, path="/dashboard")
        return response

    @router.post("/dashboard/logout")
    async def logout(request: Request, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
        auth, session = await current(ctx, request)
        if session is not None:
            auth.check_csrf(request, auth.signer.csrf_token(session), csrf or request.headers.get("x-csrf-token"))
        response = RedirectResponse("/dashboard/login", status_code=303)
        auth.clear_session_cookie(request, response)
        return response


def _page_routes(router: APIRouter, ctx: ProcessContext) -> None:
    @router.get("/dashboard")
    async def home(request: Request) -> Response:
        _auth, session = await current(ctx, request)
        if session is None:
            return RedirectResponse("/dashboard/login", status_code=303)
        return RedirectResponse("/dashboard/processes" if session.principal.is_admin else "/dashboard/phones",
                                status_code=303)

    @router.get("/dashboard/{page}")
    async def page(request: Request, page: str) -> Response:
        if page not in PAGES:
            raise NotFound(f"no dashboard page {page!r}")
        auth, session = await current(ctx, request)
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/dashboard/login?next={quote(target, safe='')}", status_code=303)
        principal = session.principal
        title, admin_only = PAGES[page]
        allowed = principal.is_admin or not admin_only
        who = "operator" if principal.is_admin else f"company {principal.company_id}"
        document = render("layout.html", title=esc(title), page=esc(page), script=page if allowed else "forbidden",
                          body=render(f"{page}.html") if allowed else render("forbidden.html", title=esc(title)),
                          nav=_nav(page, principal.is_admin), who=esc(who), kind=esc(principal.kind),
                          company=esc(principal.company_id or ""), csrf=esc(auth.signer.csrf_token(session)))
        return HTMLResponse(document, status_code=200 if allowed else 403, headers=PAGE_HEADERS)


def _asset_routes(router: APIRouter) -> None:
    @router.get("/dashboard/static/{path:path}")
    async def static(path: str) -> Response:
        file = _static_file(path)
        if file is None:
            raise NotFound(f"no static file {path!r}")
        media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix == ".js":
            media_type = "text/javascript"
        return FileResponse(file, media_type=media_type,
                            headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})

    @router.get("/docs")
    async def docs(request: Request) -> HTMLResponse:
        app = request.app
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - docs",
                                   swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js?v={quote(__version__)}",
                                   swagger_css_url=f"{SWAGGER}/swagger-ui.css?v={quote(__version__)}",
                                   swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png")


def _nav(current: str, is_admin: bool) -> str:
    links = []
    for name, (label, admin_only) in PAGES.items():
        if admin_only and not is_admin:
            continue
        marker = ' aria-current="page"' if name == current else ""
        links.append(f'<a href="/dashboard/{name}"{marker}>{esc(label)}</a>')
    return "".join(links)


def _redirect_to(target: str) -> Callable[[], Awaitable[RedirectResponse]]:
    async def redirect() -> RedirectResponse:
        return RedirectResponse(target, status_code=302)

    return redirect


@cache
def _static_files() -> dict[str, Path]:
    return {str(p.relative_to(STATIC)): p for p in STATIC.rglob("*") if p.is_file()}


def _static_file(path: str) -> Path | None:
    """Only files that ship in ``static/`` (never a path computed from the request)."""
    return _static_files().get(path)

