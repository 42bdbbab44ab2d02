"""The same viewer as a line's, served by the site under `/lines/NAME/`: its relative URLs (`api/...`,
`scene.glb`, `ws`) then reach that line through the proxy, and its line switcher reads `/api/site`."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from twin.server.assets import WEB_DIST

router = APIRouter()


@router.get("/", include_in_schema=False)
def home(request: Request) -> Response:
    """The first line's viewer (the query, a token say, goes along)."""
    first = request.app.state.site.lines[0].name
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/lines/{first}/{query}")


@router.get("/lines/{name}", include_in_schema=False)
def line_home(name: str, request: Request) -> Response:
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/lines/{name}/{query}")


@router.get("/lines/{name}/{path:path}", include_in_schema=False)
def viewer_file(name: str, path: str, request: Request) -> Response:
    if request.app.state.site.line(name) is None:
        raise HTTPException(404, f"no line {name!r} in this site")
    root = WEB_DIST.resolve()
    if not (root / "index.html").is_file():
        return HTMLResponse(f"<p>The viewer is not built: run <code>npm ci && npm run build</code> in "
                            f"<code>web/</code> (looked in {root}).</p>")
    file = (root / (path or "index.html")).resolve()
    if not file.is_relative_to(root) or not file.is_file():
        raise HTTPException(404, f"no viewer file {path!r}")
    return FileResponse(file)
