"""The SDK against a site (`twin site`): its lines, their state and KPIs, and any line's usual client through the
site's proxy. As light as the remote client: httpx only, no Warp, no USD.

    import twin
    site = twin.Site("http://127.0.0.1:8080", token=TOKEN)
    with site.line("line1") as plant:
        print(plant.read("/Factory/Line/Sink.twin:partsIn").value)
"""

from __future__ import annotations

from typing import Any

import httpx

from twin.core.errors import TwinError
from twin.sdk.remote import AsyncTwinClient, TwinClient
from twin.sdk.types import api_error


class Site:
    """A site server: `lines()`, `alarms()`, `kpis()` as the broker shows them, and `line(name)` (or
    `line_async(name)`) for a client of one line that works exactly as `twin.connect` does."""

    def __init__(self, url: str = "http://127.0.0.1:8080", *, token: str | None = None, timeout: float = 30.0):
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def _get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = httpx.get(f"{self.url}{path}", headers=headers, timeout=self.timeout)
        except httpx.TransportError as error:
            raise TwinError(f"GET {path}: cannot reach the site at {self.url}: {error}") from None
        if not response.is_success:
            raise api_error(response.status_code, response.json().get("detail", response.text)
                            if response.headers.get("content-type", "").startswith("application/json")
                            else response.text, f"GET {path}")
        return response.json()

    def lines(self) -> list[dict]:
        """Each line: name, state (up, down, unknown), since, last_seen, kpis, url, process."""
        return self._get("/api/site")["lines"]

    def kpis(self) -> dict:
        """The site's KPIs: {name: {value, aggregate (sum or mean), lines}} over the lines that are up."""
        return self._get("/api/site/kpis")

    def alarms(self) -> list[dict]:
        """Every line's alarms that are not back to normal, each with its line."""
        return self._get("/api/site/alarms")

    def line_url(self, name: str) -> str:
        return f"{self.url}/lines/{name}"

    def line(self, name: str) -> TwinClient:
        """The usual synchronous client of one line, through the site."""
        return TwinClient(self.line_url(name), token=self.token, timeout=self.timeout)

    def line_async(self, name: str) -> AsyncTwinClient:
        """The usual asyncio client of one line, through the site."""
        return AsyncTwinClient(self.line_url(name), token=self.token, timeout=self.timeout)
