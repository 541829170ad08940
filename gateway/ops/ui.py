"""Serves the dashboard: static files shipped in the package, read once at startup."""
from __future__ import annotations

from importlib import resources

from aiohttp import web

_TYPES = {".html": "text/html", ".css": "text/css", ".js": "application/javascript", ".svg": "image/svg+xml"}
_SECURITY = {"x-frame-options": "DENY", "referrer-policy": "no-referrer",
             "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"}


def _load() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("gateway.ops").joinpath("dashboard")
    files = {}
    for entry in folder.iterdir():
        suffix = entry.name[entry.name.rfind("."):]
        if suffix in _TYPES:
            files[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return files


def add_routes(app: web.Application) -> None:
    files = _load()

    def respond(name: str) -> web.Response:
        if name not in files:
            raise web.HTTPNotFound()
        body, content_type = files[name]
        return web.Response(body=body, content_type=content_type, headers={**_SECURITY, "cache-control": "no-cache"})

    async def index(request: web.Request) -> web.Response:
        return respond("index.html")

    async def static(request: web.Request) -> web.Response:
        return respond(request.match_info["name"])

    async def favicon(request: web.Request) -> web.Response:   # browsers ask for it at the root
        return respond("favicon.svg")

    app.router.add_get("/dashboard", index)
    app.router.add_get("/dashboard/", index)
    app.router.add_get("/dashboard/static/{name}", static)
    app.router.add_get("/favicon.ico", favicon)
