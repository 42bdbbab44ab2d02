"""The `twin` command: run the demo, serve a layout, take snapshots, run the sample PLC.

This module is the composition root: the only place that wires connectors, the twin
core, the simulation and the server together.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from twin.core.errors import TwinError

if TYPE_CHECKING:
    from twin.connectors.bindings import BindingFile
    from twin.history.store import Retention
    from twin.sim.runtime import Twin

log = logging.getLogger("twin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the simulated PLC exited with code {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def ensure_port_free(host: str, port: int, what: str, option: str) -> None:
    """TwinError naming the port and the way out when something listens on it already (an earlier demo, say):
    otherwise the demo would talk to that listener, or fail half started."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as error:
            raise TwinError(f"{what} port {port} on {host} is in use ({error.strerror}): stop what listens "
                            f"there (an earlier `twin demo`?) or choose another port with {option}") from None


def default_workdir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "twin" / "demo"


def build_sample(workdir: Path, force: bool = False) -> Path:
    """Author the sample factory (USD + GLB) unless an up-to-date copy exists."""
    from twin import scenes
    from twin.sample_factory import scene as sample_scene

    layout = workdir / "factory.usda"
    sources = [*Path(sample_scene.__file__).parent.glob("*.py"),
               *Path(scenes.__file__).parent.glob("*.py")]
    newest_source = max((p.stat().st_mtime for p in sources if p.exists()), default=0)
    if force or not layout.is_file() or layout.stat().st_mtime < newest_source:
        log.info("building the sample factory in %s", workdir)
        layout = sample_scene.build_sample_factory(workdir)
    return layout


async def serve(
    layout: Path,
    bindings: Path | list[Path] | None,
    *,
    host: str,
    port: int,
    glb: Path | None,
    endpoints: dict[str, str],
    tick_hz: float,
    tokens: Path | None = None,
    operator_token: bool = False,
    history: Path | None = None,
    retention: Retention | None = None,
    http: dict | None = None,
    ray_address: str | None = None,
    physics: bool = False,
) -> None:
    import uvicorn

    from twin.connectors.bindings import load_bindings, merge_bindings, validate_against_stage
    from twin.connectors.mqtt import MqttConnector
    from twin.connectors.opcua import OpcUaConnector
    from twin.server.app import create_app
    from twin.server.auth import Access
    from twin.server.http import server_config
    from twin.sim.physics_runtime import POSES
    from twin.sim.runtime import Twin

    files = [load_bindings(path, endpoints) for path in ([bindings] if isinstance(bindings, Path) else bindings or [])]
    part_poses = bound_part_poses(files)
    if part_poses is not None and physics:
        raise TwinError(f"{part_poses[0]}.{POSES} is bound: the plant's physics poses the parts; --physics would run "
                        "a second flow of the line in the twin (leave one out)")
    # physics: part poses from the line run on Newton in the twin itself (docs/physics.md)
    twin = Twin(layout, physics=physics, part_poses=part_poses)
    access = Access.load(tokens, loopback_only=host in ("127.0.0.1", "localhost", "::1"))
    connector = mqtt_in = publisher = stream_out = None
    binding_file = None
    if files:
        for one in files:
            validate_against_stage(one, twin.stage.stage)
        binding_file = merge_bindings(*files)
        connector = OpcUaConnector(binding_file, twin.cache, audit_path=layout.parent / "audit.jsonl")
        if binding_file.brokers:
            mqtt_in = MqttConnector(binding_file, twin.cache)
        if binding_file.publish is not None:
            from twin.server.publish_mqtt import MqttPublisher, finished_studies, published_rows

            publish = binding_file.publish
            bd_seq = layout.parent / f"sparkplug-{publish.group}-{publish.edge_node}.bdseq"  # kept across restarts
            publisher = MqttPublisher(publish, binding_file.path, twin.cache, published_rows(twin), twin.alarms,
                                      whatif=lambda: finished_studies(app.state.whatif), bd_seq_path=bd_seq)
            if binding_file.publish.stream:  # the runtime cache for relays (`twin relay`, docs/scale.md)
                from twin.server.publish_stream import StreamStatePublisher

                stream_out = StreamStatePublisher(binding_file.publish, binding_file.path, twin.cache, tick_hz)
        twin.alarms.add_rules(rule for binding in binding_file.bindings for rule in binding.alarms)
    twin.alarms.check()  # the connector has registered its signals: every rule can be matched to one
    for rule in twin.alarms.unresolved():
        log.warning("%s: alarm %s watches %s, which no binding, robot or line element provides: it cannot fire",
                    rule.where, rule.name, rule.key)
    historian = None
    if history is not None:
        from twin.history.store import Historian

        historian = Historian(history, twin.cache, retention=retention or history_retention(),
                              min_interval_s=history_intervals(twin, binding_file))
        print(f"twin: history in {history}", flush=True)

    async def start_history() -> None:
        historian.start()

    connectors = [part for part in (connector, mqtt_in, publisher, stream_out) if part is not None]

    def connectors_health() -> dict:
        """The OPC-UA servers' and MQTT brokers' sessions by name, and the publisher's."""
        health = {**connector.health(), **(mqtt_in.health() if mqtt_in else {})}
        if publisher is not None:
            health[f"{publisher.config.broker.name} (publish)"] = publisher.health()
        if stream_out is not None:
            health[f"{stream_out.config.broker.name} (stream)"] = stream_out.health()
        return health

    async def stop_history() -> None:
        await asyncio.to_thread(historian.stop)

    app = create_app(
        twin, glb_path=glb, tick_hz=tick_hz, writer=connector, access=access,
        connector_health=connectors_health if connector else None,
        on_startup=[part.start for part in connectors] + ([start_history] if historian else []),
        on_shutdown=[part.stop for part in connectors] + ([stop_history] if historian else []),
        historian=historian, ray_address=ray_address,
        **(http or {}),
    )
    if operator_token:
        print(f"twin: operator token (for POST /api/write): {access.issue('demo-operator', 'operator')}", flush=True)
    server = uvicorn.Server(server_config(app, host, port))
    print(f"twin: serving {layout.name} at http://{host}:{port}", flush=True)
    await server.serve()


def history_intervals(twin: Twin, bindings: BindingFile | None) -> dict[str, float]:
    """The historian's `min_interval_s`: the bindings' `history_ms`, and the twin's own physics poses (a wide
    signal written every tick) at `POSES_HISTORY_S`, as a plant's bound poses are in the sample."""
    from twin.sim.physics_runtime import POSES_HISTORY_S

    intervals = bindings.history_intervals() if bindings is not None else {}
    if twin.physics is not None:
        intervals[twin.cache.signals[twin.physics.poses_row].key] = POSES_HISTORY_S
    return intervals


def bound_part_poses(files: list[BindingFile]) -> tuple[str, int] | None:
    """(line prim, part capacity) where a binding feeds the line's twin:physics:partPoses, else None.

    A plant on physics publishes its parts' poses (as the sample PLC on physics does): the twin then draws its
    parts there instead of deriving them from positions along belts (docs/physics.md).
    """
    from twin.sim.physics_runtime import POSES

    poses = next((b for f in files for b in f.bindings if b.attr == POSES), None)
    return None if poses is None else (poses.prim, poses.width // 7)  # 7 doubles a pose: x, y, z and a quaternion


def history_retention(raw_days: float = 1.0, step_s: float = 10.0, keep_days: float = 31.0) -> Retention:
    """Raw samples for `raw_days`, then one per `step_s` per signal until `keep_days` (0: keep forever)."""
    from twin.history.store import Retention

    if raw_days <= 0 or step_s <= 0 or keep_days < 0 or (keep_days and keep_days < raw_days):
        raise TwinError(f"history retention: raw days {raw_days:g} and step {step_s:g} s must be > 0, keep days "
                        f"{keep_days:g} >= raw days (or 0 for ever)")
    return Retention(raw_s=raw_days * 86_400.0, step_s=step_s, keep_s=keep_days * 86_400.0 if keep_days else None)


def run_demo(args: argparse.Namespace) -> int:
    from twin.sample_factory import plc as sample_plc

    workdir = Path(args.workdir or default_workdir())
    started = time.monotonic()
    # SIGTERM (a service manager, `timeout`) must stop the PLC too: turn it into a normal exit
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    layout = build_sample(workdir, force=args.rebuild)
    ensure_port_free(args.host, args.port, "the demo's HTTP", "--port")
    plc_port = args.plc_port or free_port()
    ensure_port_free("127.0.0.1", plc_port, "the simulated PLC's OPC-UA", "--plc-port")
    endpoint = f"opc.tcp://127.0.0.1:{plc_port}/factory/"
    physics = not args.line_model  # the PLC's plant runs on physics and publishes its part poses (docs/physics.md)
    plc = subprocess.Popen(
        [sys.executable, "-m", "twin.sample_factory.plc", "--port", str(plc_port), "--seed", str(args.seed),
         "--parent-pid", str(os.getpid()),  # it stops when we end, even by SIGKILL
         *(["--physics", "--layout", str(layout)] if physics else [])],
        start_new_session=True,  # Ctrl-C reaches us once; we stop the PLC ourselves
    )
    exit_code = 0
    try:
        try:
            wait_for_port(plc_port, 60.0 if physics else 30.0, plc)  # physics warms up for some seconds
        except (RuntimeError, TimeoutError) as error:
            raise TwinError(f"the simulated PLC did not start: {error}") from None
        print(f"twin: simulated PLC at {endpoint} (pid {plc.pid})", flush=True)
        bindings = [Path(sample_plc.__file__).with_name(name)  # the physics plant's part poses besides the rest
                    for name in ("bindings.yaml", *(["bindings_physics.yaml"] if physics else []))]
        asyncio.run(serve(layout, bindings, host=args.host, port=args.port, glb=layout.with_suffix(".glb"),
                          endpoints={"plc": endpoint}, tick_hz=args.tick_hz, operator_token=True,
                          history=workdir / f"history-{args.port}.duckdb",  # one store per running demo
                          http=http_options(args)))
    except KeyboardInterrupt:
        pass
    except SystemExit as exit_request:  # 0 from SIGTERM; uvicorn exits 1 when it cannot bind its port
        exit_code = exit_request.code if isinstance(exit_request.code, int) else 1
    finally:
        if plc.poll() is None:
            plc.send_signal(signal.SIGINT)
            try:
                plc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                plc.kill()
        print(f"twin: demo stopped after {time.monotonic() - started:.0f} s", flush=True)
    return exit_code


def run_serve(args: argparse.Namespace) -> int:
    from twin.server.assets import layout_glb

    endpoints = dict(item.split("=", 1) for item in args.endpoint)
    retention = history_retention(args.history_raw_days, args.history_step_s, args.history_keep_days)
    glb = Path(args.glb) if args.glb else layout_glb(Path(args.layout))  # built from the stage, cached by content
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(Path(args.layout), Path(args.bindings) if args.bindings else None,
                          history=Path(args.history) if args.history else None,
                          retention=retention, host=args.host, port=args.port, glb=glb, endpoints=endpoints,
                          tick_hz=args.tick_hz,
                          tokens=Path(args.tokens) if args.tokens else None, http=http_options(args),
                          ray_address=args.ray_address, physics=args.physics))
    return 0


def run_snapshot(args: argparse.Namespace) -> int:
    with urllib.request.urlopen(f"{args.url.rstrip('/')}/api/snapshot.usda", timeout=30) as response:
        text = response.read().decode()
    Path(args.out).write_text(text)
    print(f"twin: snapshot of {args.url} saved to {args.out}")
    return 0


def run_build_sample(args: argparse.Namespace) -> int:
    layout = build_sample(Path(args.out), force=True)
    print(f"twin: sample factory written to {layout} and {layout.with_suffix('.glb')}")
    return 0


def run_layout_build(args: argparse.Namespace) -> int:
    from twin.line.check import check_layout
    from twin.scenes.plant import build_plant

    layout = build_plant(Path(args.plant), Path(args.out) if args.out else None)
    print(f"twin: layout written to {layout} and {layout.with_suffix('.glb')}")
    report = check_layout(layout)
    print(report.text())
    return 1 if report.errors else 0


def run_layout_check(args: argparse.Namespace) -> int:
    from twin.line.check import check_layout

    report = check_layout(Path(args.layout), Path(args.bindings) if args.bindings else None)
    print(report.text())
    return 1 if report.errors else 0


def run_opcua_browse(args: argparse.Namespace) -> int:
    from twin.connectors.browse import browse, draft_bindings, format_tree, prims_by_name

    tree = asyncio.run(browse(args.endpoint, depth=args.depth))
    print(format_tree(tree))
    if args.out:
        names = prims_by_name(Path(args.scene)) if args.scene else {}
        Path(args.out).write_text(draft_bindings(tree, args.endpoint, names, server=args.server))
        print(f"twin: draft binding file written to {args.out}")
    return 0


def run_commission(args: argparse.Namespace) -> int:
    from twin.commission.security import EndpointSecurity, require_security
    from twin.commission.server import open_layout, serve

    security = EndpointSecurity.from_environment(args.user, Path(args.pki) if args.pki else None) \
        if args.user else None
    require_security(args.host, security)
    options = {"port": args.port, "lockstep": args.lockstep, "speedup": args.speedup, "watchdog_s": args.watchdog_s,
               "cycle_s": args.cycle_ms / 1000.0, "seed": args.seed, "host": args.host, "security": security,
               "physics": args.physics}
    if args.export_nodeset or not args.http_port:
        if not args.export_nodeset:
            ensure_port_free(args.host, args.port, "OPC-UA", "--port")
        asyncio.run(serve(args.layout, **options,
                          export_nodeset=Path(args.export_nodeset) if args.export_nodeset else None))
        return 0
    from twin.server.commissioning import serve_commission

    open_layout(args.layout)  # a missing layout is refused before anything starts
    ensure_port_free(args.host, args.port, "OPC-UA", "--port")
    ensure_port_free("127.0.0.1", args.http_port, "the viewer's HTTP", "--http-port")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_commission(Path(args.layout), http_port=args.http_port, **options))
    return 0


def run_site(args: argparse.Namespace) -> int:
    from twin.site.app import run_site as serve_site

    return serve_site(Path(args.site))


def run_relay(args: argparse.Namespace) -> int:
    from twin.site.relay import run_relay as serve_relay

    return serve_relay(Path(args.layout), broker_url=args.broker, topic_root=args.topic_root, host=args.host,
                       port=args.port, tokens=Path(args.tokens) if args.tokens else None,
                       glb=Path(args.glb) if args.glb else None)


def positive_number(text: str) -> float:
    """A finite number > 0, for argparse (which names the option in its error)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text[:40]!r}")
    return value


def run_opcua_certs(args: argparse.Namespace) -> int:
    from twin.connectors.security import certs_command

    return certs_command(Path(args.folder) if args.folder else None)


def byte_count(text: str) -> int:
    """A whole number of bytes > 0, for argparse (which names the option in its error)."""
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of bytes > 0, got {text[:40]!r}")
    return int(text)


def ray_address(text: str) -> str:
    """A Ray cluster's address, for argparse (which names the option in its error); Ray must be installed."""
    import importlib.util

    from twin.line.distributed import check_address

    try:
        check_address(text)
    except TwinError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if importlib.util.find_spec("ray") is None:
        raise argparse.ArgumentTypeError("what-if studies on Ray need Ray: pip install 'factory-twin[ray]'")
    return text


def add_http_options(command: argparse.ArgumentParser) -> None:
    """The HTTP server's limits, the same for `twin serve` and `twin demo` (docs/architecture.md, Limits)."""
    command.add_argument("--max-body-bytes", type=byte_count, metavar="N",
                         help="refuse request bodies over N bytes with 413 before reading them (default: 1 MiB)")
    command.add_argument("--open-docs", action="store_true",
                         help="serve the API description (/docs, /openapi.json) to anyone; by default it needs "
                              "the viewer role, as the API does (anonymous is a viewer only on loopback)")


def http_options(args: argparse.Namespace) -> dict:
    """create_app's keyword arguments from the flags of add_http_options (its own defaults where not given)."""
    options: dict = {"open_docs": args.open_docs}
    if args.max_body_bytes is not None:
        options["max_body_bytes"] = args.max_body_bytes
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twin", description="Factory digital twin")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the sample factory with its simulated PLC, and serve the viewer")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--plc-port", type=int, default=0, help="OPC-UA port of the simulated PLC (0: any free)")
    demo.add_argument("--workdir", help="where the sample factory's USD and GLB are built")
    demo.add_argument("--rebuild", action="store_true", help="rebuild the sample factory")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--tick-hz", type=float, default=30.0)
    plant = demo.add_mutually_exclusive_group()
    plant.add_argument("--physics", action="store_true",
                       help="the default: the simulated PLC runs the line on Newton physics and publishes its parts' "
                            "poses; the twin mirrors it (docs/physics.md)")
    plant.add_argument("--line-model", action="store_true",
                       help="the simulated PLC runs the kinematic line model instead of physics, which starts "
                            "faster (docs/line-model.md)")
    add_http_options(demo)
    demo.set_defaults(handler=run_demo)

    serve_cmd = commands.add_parser("serve", help="serve a layout fed by the OPC-UA servers of a binding file")
    serve_cmd.add_argument("layout")
    serve_cmd.add_argument("--bindings")
    serve_cmd.add_argument("--glb", help="GLB of the layout for the viewer (default: built from the layout's stage "
                           "and cached in ~/.cache/twin/glb until a file it composes changes)")
    serve_cmd.add_argument("--endpoint", action="append", default=[], metavar="SERVER=URL",
                           help="override a server's endpoint from the binding file")
    serve_cmd.add_argument("--port", type=int, default=8000)
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--tick-hz", type=float, default=30.0)
    serve_cmd.add_argument("--physics", action="store_true",
                           help="run the layout's line on Newton physics for part poses (docs/physics.md)")
    serve_cmd.add_argument("--tokens", help="JSON file of API tokens and roles (see twin/auth.py)")
    serve_cmd.add_argument("--history", help="keep every signal update in this DuckDB file (docs/history.md)")
    serve_cmd.add_argument("--history-raw-days", type=float, default=1.0, help="keep raw samples this long")
    serve_cmd.add_argument("--history-step-s", type=float, default=10.0,
                           help="after that, one sample per signal per this many seconds")
    serve_cmd.add_argument("--history-keep-days", type=float, default=31.0, help="drop samples older (0: never)")
    serve_cmd.add_argument("--ray-address", type=ray_address, metavar="ADDR",
                           help="run what-if studies on this Ray cluster: auto, ray://HOST:PORT or HOST:PORT "
                                "(docs/scale.md; needs `pip install 'factory-twin[ray]'`)")
    add_http_options(serve_cmd)
    serve_cmd.set_defaults(handler=run_serve)

    snapshot = commands.add_parser("snapshot", help="save the live state of a running twin as a USD layer")
    snapshot.add_argument("out")
    snapshot.add_argument("--url", default="http://127.0.0.1:8000")
    snapshot.set_defaults(handler=run_snapshot)

    build = commands.add_parser("build-sample", help="author the sample factory's USD and GLB")
    build.add_argument("out")
    build.set_defaults(handler=run_build_sample)

    layout_cmd = commands.add_parser("layout", help="author and check layouts").add_subparsers(
        dest="layout_command", required=True)
    layout_build = layout_cmd.add_parser("build", help="author a layout (USD and GLB) from a plant file (YAML)")
    layout_build.add_argument("plant", help="the plant file (docs/tutorial.md)")
    layout_build.add_argument("--out", help="folder for the .usda and .glb (default: beside the plant file)")
    layout_build.set_defaults(handler=run_layout_build)
    layout_check = layout_cmd.add_parser("check", help="say what the twin will do with a layout; fails on errors")
    layout_check.add_argument("layout")
    layout_check.add_argument("--bindings", help="a binding file whose prims must be in the layout")
    layout_check.set_defaults(handler=run_layout_check)

    commission = commands.add_parser("commission", help="serve a layout's simulated line to control programs "
                                                        "over OPC-UA (virtual commissioning, docs/commissioning.md)")
    commission.add_argument("layout")
    commission.add_argument("--port", type=int, default=4841)
    commission.add_argument("--host", default="127.0.0.1", help="the OPC-UA address to bind; beyond loopback "
                                                                 "it needs --user (docs/commissioning.md)")
    commission.add_argument("--user", help="serve Basic256Sha256 SignAndEncrypt only, to this user; the password "
                                           "comes from $TWIN_COMMISSION_PASSWORD")
    commission.add_argument("--pki", help="the server certificate and trusted/ client certificates "
                                          "(default ~/.config/twin/pki/commission)")
    commission.add_argument("--lockstep", action="store_true", help="the controller advances time with Step")
    commission.add_argument("--physics", action="store_true", help="parts ride the belts on Newton physics; "
                                                                   "photo-eyes are ray casts")
    commission.add_argument("--speedup", type=positive_number, default=1.0, help="free-run: plant s per wall s")
    commission.add_argument("--cycle-ms", type=positive_number, default=50.0, help="plant time per cycle")
    commission.add_argument("--watchdog-s", type=positive_number, default=1.0,
                            help="outputs fall back to safe values after the controller is silent this long")
    commission.add_argument("--seed", type=int, default=1, help="of part arrivals and station failures")
    commission.add_argument("--http-port", type=int, default=8000,
                            help="the twin's HTTP API and viewer of the simulated line (0: none)")
    commission.add_argument("--export-nodeset", metavar="FILE", help="write the address space as UANodeSet XML "
                                                                     "and exit")
    commission.set_defaults(handler=run_commission)

    site_cmd = commands.add_parser("site", help="run one twin per line of a site and a site server over them "
                                                "(docs/site.md)")
    site_cmd.add_argument("site", help="the site file (SITE.yaml)")
    site_cmd.set_defaults(handler=run_site)

    relay = commands.add_parser("relay", help="serve a line's viewers from the stream state it publishes to a "
                                              "broker (read-only; docs/scale.md)")
    relay.add_argument("layout", help="the line's layout (the same file the line serves)")
    relay.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    relay.add_argument("--topic-root", required=True, metavar="ROOT",
                       help="the line's publish topic_root: its state is on ROOT/stream/state")
    relay.add_argument("--port", type=int, default=8000)
    relay.add_argument("--host", default="127.0.0.1")
    relay.add_argument("--tokens", help="JSON file of API tokens and roles (as for twin serve)")
    relay.add_argument("--glb", help="GLB of the layout (default: built from the layout, as for twin serve)")
    relay.set_defaults(handler=run_relay)

    opcua = commands.add_parser("opcua", help="OPC-UA tools").add_subparsers(dest="opcua_command", required=True)
    browse_cmd = opcua.add_parser("browse", help="print a server's address space and draft a binding file")
    browse_cmd.add_argument("endpoint", help="opc.tcp://HOST:PORT[/path]")
    browse_cmd.add_argument("--depth", type=int, default=8)
    browse_cmd.add_argument("--out", help="write a draft binding file here")
    browse_cmd.add_argument("--scene", help="a layout (.usda) whose prims the variables are matched to")
    browse_cmd.add_argument("--server", default="plc", help="the server's name in the draft")
    browse_cmd.set_defaults(handler=run_opcua_browse)
    certs = opcua.add_parser("certs", help="create (once) and show the twin's OPC-UA client certificate")
    certs.add_argument("--folder", help="where the certificate and key live (default: ~/.config/twin/pki)")
    certs.set_defaults(handler=run_opcua_certs)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # the connector logs connection trouble itself

    try:
        return args.handler(args)
    except TwinError as error:
        print(f"twin: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
