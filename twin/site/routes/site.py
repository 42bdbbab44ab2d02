"""The site as the broker shows it: each line's state and KPIs, the site's KPIs, every line's active alarms."""

from __future__ import annotations

from fastapi import APIRouter, Request

router = APIRouter()


@router.get("/api/site")
def site(request: Request) -> dict:
    """Each line: up, down or unknown (nothing heard yet), since when, its last message, its KPIs, its URL
    through the site and its process; and the site's KPIs across the lines that are up."""
    state = request.app.state
    lines = state.namespace.snapshot()
    for line in lines:
        line["url"] = f"/lines/{line['name']}/"
        line["process"] = {"port": state.supervisor.lines[line["name"]].port,
                           **state.supervisor.describe(line["name"])}
    return {"site": state.site.path.name, "broker": {"url": state.site.broker.url,
                                                     "connected": state.namespace.connected},
            "lines": lines, "kpis": state.namespace.kpis()}


@router.get("/api/site/kpis")
def site_kpis(request: Request) -> dict:
    """Throughput and WIP summed over the lines that are up, OEE and availability averaged."""
    return request.app.state.namespace.kpis()


@router.get("/api/site/alarms")
def site_alarms(request: Request) -> list[dict]:
    """Every line's alarms that are not back to normal: {line, rule, state, message, severity}."""
    return request.app.state.namespace.alarms()
