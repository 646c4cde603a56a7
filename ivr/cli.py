"""The `ivr` command: validate, schema, graph, simulate (and serve, as the engine grows)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .flows import Report, check_file

DEFAULT_FLOWS = "flows.yaml"


def _print_report(report: Report, as_json: bool, out=sys.stdout) -> None:
    items = report.sorted()
    if as_json:
        json.dump([d.as_dict() for d in items], out, indent=2)
        out.write("\n")
        return
    for d in items:
        print(d.format(), file=out)


def _load_or_exit(path: str, *, check_media: bool = True):
    flow, report = check_file(path, check_media=check_media)
    if flow is None:
        _print_report(report, False, sys.stderr)
        n = len(report.errors)
        print(f"{path}: {n} error(s); fix them first (ivr validate {path})", file=sys.stderr)
        raise SystemExit(1)
    for d in report.sorted():
        print(d.format(), file=sys.stderr)
    return flow


def cmd_validate(args) -> int:
    flow, report = check_file(args.flows, check_media=not args.no_media)
    _print_report(report, args.json)
    errors, warnings = len(report.errors), len(report.warnings)
    if not args.json:
        if errors:
            print(f"{args.flows}: {errors} error(s), {warnings} warning(s)", file=sys.stderr)
        else:
            nodes = len(flow.nodes) if flow else 0
            print(f"{args.flows}: valid ({nodes} nodes, {warnings} warning(s))", file=sys.stderr)
    if errors or (args.strict and warnings):
        return 1
    return 0


def cmd_schema(args) -> int:
    from .flows.schema import schema_json
    text = schema_json("handoff" if args.handoff else "flows")
    if args.output and args.output != "-":
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_graph(args) -> int:
    from .flows.graph import write_graph
    flow = _load_or_exit(args.flows)
    try:
        fmt = write_graph(flow, args.output, args.format)
    except ValueError as exc:
        print(f"ivr graph: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({fmt}, {len(flow.nodes)} nodes)", file=sys.stderr)
    return 0


def _parse_at(text: str | None) -> dt.datetime:
    """'2026-11-23T10:00', optionally followed by a time zone name; default now."""
    if not text:
        return dt.datetime.now(dt.UTC)
    stamp, _, zone = text.partition(" ")
    try:
        when = dt.datetime.fromisoformat(stamp)
    except ValueError:
        raise SystemExit(f"ivr simulate: --at {text!r}: use YYYY-MM-DDTHH:MM [Zone/Name]") from None
    if when.tzinfo is None:
        try:
            when = when.replace(tzinfo=ZoneInfo(zone) if zone else dt.UTC)
        except ZoneInfoNotFoundError:
            raise SystemExit(f"ivr simulate: unknown time zone {zone!r}") from None
    return when


def cmd_simulate(args) -> int:
    from .simulator import ScriptError, Simulation, parse_script
    flow = _load_or_exit(args.flows)
    steps = None
    interactive = False
    if args.script:
        try:
            steps = parse_script(Path(args.script).read_text(encoding="utf-8"))
        except (OSError, ScriptError) as exc:
            print(f"ivr simulate: {exc}", file=sys.stderr)
            return 2
    elif sys.stdin.isatty():
        interactive = True
        print("Simulated call. Type keys (1, 0, 123#) or words (billing); an empty line is silence; "
              "Ctrl-D goes quiet.", file=sys.stderr)
    else:
        # Piped input is a script: `echo 0 | ivr simulate flows.yaml --json`.
        try:
            steps = parse_script(sys.stdin.read())
        except ScriptError as exc:
            print(f"ivr simulate: {exc}", file=sys.stderr)
            return 2
    quiet = args.quiet
    out = None if quiet else (sys.stderr if args.json else sys.stdout)
    sim = Simulation(flow, steps, interactive=interactive, out=out, caller=args.caller,
                     dialled=args.dialled, at=_parse_at(args.at), router_accepts=not args.router_refuses,
                     full_mailboxes=tuple(args.mailbox_full or ()))
    journey = sim.run()
    if args.json:
        doc = journey.to_dict()
        doc["script_failures"] = sim.failures
        json.dump(doc, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    for f in sim.failures:
        print(f"FAILED {f}", file=sys.stderr)
    return 1 if sim.failures else 0


def _hostport(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    try:
        return host.strip("[]") or "0.0.0.0", int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT") from None


def cmd_serve(args) -> int:
    import asyncio
    import logging

    from .app import Settings, serve
    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sip_host, sip_port = _hostport(args.sip, 5060)
    http_host, http_port = _hostport(args.http, 8080)
    lo, _, hi = args.rtp_ports.partition("-")
    settings = Settings(
        flows=args.flows, sip_host=sip_host, sip_port=sip_port, http_host=http_host, http_port=http_port,
        data=args.data, public_host=args.public_host, rtp_ports=range(int(lo), int(hi or lo) + 1),
        capacity=args.capacity, soft_capacity=args.soft_capacity, router=args.router, router_url=args.router_url,
        router_status_url=args.router_status_url,
        agents=args.agents, queue_targets=dict(t.split("=", 1) for t in args.queue_target or ()),
        ring_s=args.ring, speech_engine=args.speech_engine, vosk_model=args.vosk_model,
        speech_workers=args.speech_workers, trunk=args.trunk, caller_id=args.caller_id,
        callback_calls=args.callback_calls, callback_ring_s=args.callback_ring,
        api_token=args.api_token or os.environ.get("IVR_API_TOKEN") or None,
        webrtc_max_calls=args.webrtc_max_calls, webrtc_origins=list(args.webrtc_origin or ()),
        webrtc_token=args.webrtc_token or os.environ.get("IVR_WEBRTC_TOKEN") or None,
        ice_servers=list(args.ice_server or ()), webrtc_hosts=list(args.webrtc_host or ()),
        **_turn_settings(args))
    if args.register:
        settings.register = args.register
        settings.register_user = args.register_user
        # From the environment by default, so the password stays out of `ps` and shell history.
        settings.register_password = args.register_password or os.environ.get("IVR_REGISTER_PASSWORD") or None
        settings.register_expires = args.register_expires
    return asyncio.run(serve(settings))


def _turn_settings(args) -> dict:
    """The TURN credentials of `ivr serve`, checked against its --ice-server URLs; exits saying
    what to change when they cannot work. Secrets come from the environment by default, so they
    stay out of `ps` and shell history."""
    from .webrtc.ice_servers import TURN_TTL, IceConfig
    user = args.turn_user or None
    turn = {
        "turn_secret": args.turn_secret or os.environ.get("IVR_TURN_SECRET") or None,
        "turn_user": user,
        # The environment's password is for a static user; a stray one does not count.
        "turn_password": args.turn_password or (os.environ.get("IVR_TURN_PASSWORD") if user else None) or None,
        "turn_ttl": args.turn_ttl if args.turn_ttl is not None else TURN_TTL,
    }
    try:
        IceConfig(tuple(args.ice_server or ()), secret=turn["turn_secret"], user=user,
                  password=turn["turn_password"], ttl=turn["turn_ttl"])
    except ValueError as exc:
        raise SystemExit(f"ivr serve: {exc}") from None
    return turn


def _aor(text: str) -> str:
    """argparse type of --register: a SIP AOR naming a user and a host."""
    from .sip.register import parse_aor
    try:
        parse_aor(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _origin(text: str) -> str:
    """argparse type of --webrtc-origin: scheme://host[:port]."""
    from urllib.parse import urlsplit
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise argparse.ArgumentTypeError(f"{text!r} is not an origin such as https://ivr.example.org")
    return text


def _ice_server(text: str) -> str:
    """argparse type of --ice-server: a stun:, turn: or turns: URL."""
    from .webrtc.ice_servers import check_ice_server
    try:
        return check_ice_server(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> int:
    """argparse type of --turn-ttl: a positive whole number of seconds."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _ip(text: str) -> str:
    """argparse type of --webrtc-host: an IP address (aioice binds it, so no names)."""
    import ipaddress
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ivr", description="IVR and voice-flow engine")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check a flow file; exit 1 when it has errors")
    v.add_argument("flows", nargs="?", default=DEFAULT_FLOWS)
    v.add_argument("--json", action="store_true", help="print the problems as JSON")
    v.add_argument("--strict", action="store_true", help="warnings fail too")
    v.add_argument("--no-media", action="store_true", help="skip checking that media files exist")
    v.set_defaults(func=cmd_validate)

    s = sub.add_parser("schema", help="write the JSON Schema of the flow language (or of the hand-off payload)")
    s.add_argument("-o", "--output", help="file to write (default: standard output)")
    s.add_argument("--handoff", action="store_true", help="the hand-off payload schema instead")
    s.set_defaults(func=cmd_schema)

    g = sub.add_parser("graph", help="draw a flow as Mermaid (.mmd), Graphviz (.dot) or SVG (.svg)")
    g.add_argument("flows", nargs="?", default=DEFAULT_FLOWS)
    g.add_argument("-o", "--output", required=True, help="output file; its suffix picks the format")
    g.add_argument("--format", choices=["mmd", "dot", "svg"], help="format, when the suffix does not say")
    g.set_defaults(func=cmd_graph)

    m = sub.add_parser("simulate", help="a text call through a flow (interactive, piped or --script)")
    m.add_argument("flows", nargs="?", default=DEFAULT_FLOWS)
    m.add_argument("--script", help="a file of caller steps (see docs/FLOWS.md)")
    m.add_argument("--json", action="store_true", help="print the journey record as JSON on standard output")
    m.add_argument("--quiet", action="store_true", help="no transcript")
    m.add_argument("--caller", default="+441632960001", help="caller id")
    m.add_argument("--dialled", default="+441632960000", help="the number called")
    m.add_argument("--at", help='when the call happens: "2026-11-23T10:00 Europe/London" (default: now)')
    m.add_argument("--router-refuses", action="store_true", help="every hand-off is refused")
    m.add_argument("--mailbox-full", action="append", metavar="MAILBOX", help="treat this mailbox as full")
    m.set_defaults(func=cmd_simulate)

    r = sub.add_parser("serve", help="answer real calls (SIP) with the flow; /healthz and /metrics over HTTP")
    r.add_argument("flows", nargs="?", default=DEFAULT_FLOWS)
    r.add_argument("--sip", default="0.0.0.0:5060", help="SIP address (UDP and TCP), default 0.0.0.0:5060")
    r.add_argument("--http", default="127.0.0.1:8080", help="HTTP address for /healthz and /metrics")
    r.add_argument("--data", default="data", help="folder for the databases and journey records")
    r.add_argument("--public-host", help="address to advertise in Contact and SDP (default: where callers reached us)")
    r.add_argument("--rtp-ports", default="10000-20000", help="RTP port range")
    r.add_argument("--capacity", type=int, default=1000, help="hard limit of concurrent calls (503 above it)")
    r.add_argument("--soft-capacity", type=int, help="above this many calls, new callers take the flow's overflow path")
    r.add_argument("--router", choices=["sip-refer", "http"], default="sip-refer", help="how calls reach people")
    r.add_argument("--router-url", help="the HTTP router's URL (with --router http)")
    r.add_argument("--router-status-url", metavar="URL",
                   help="with --router http: GET a waiting caller's place, {queue} and {call_id} replaced")
    r.add_argument("--agents", default="sip:agents@127.0.0.1:5070", help="default SIP target of hand-offs")
    r.add_argument("--queue-target", action="append", metavar="QUEUE=URI", help="SIP target for one queue")
    r.add_argument("--ring", type=float, default=0.0, help="seconds of ringing before answering")
    r.add_argument("--register", type=_aor, metavar="sip:USER@HOST[:PORT]",
                   help="register as this extension at the registrar HOST:PORT (UDP), refreshed until shutdown")
    r.add_argument("--register-user", metavar="NAME", help="digest user name (default: the AOR's user)")
    r.add_argument("--register-password", metavar="SECRET",
                   help="digest password (default: the IVR_REGISTER_PASSWORD environment variable)")
    r.add_argument("--register-expires", type=int, default=3600, metavar="SECONDS",
                   help="binding lifetime to ask for; refreshed at half of what the registrar grants")
    r.add_argument("--speech-engine", choices=["auto", "vosk", "pocketsphinx", "off"],
                   help="override the flow's speech.engine")
    r.add_argument("--vosk-model", metavar="PATH|NAME",
                   help="override the flow's speech.vosk_model (a directory, package or model name)")
    r.add_argument("--speech-workers", type=int, metavar="N",
                   help="decoding threads (default: one per CPU core)")
    r.add_argument("--trunk", metavar="URI",
                   help="dial callbacks through this SIP URI, {number} replaced: sip:{number}@192.0.2.10:5060")
    r.add_argument("--caller-id", metavar="URI", help="From of callback calls (default sip:ivr@our address)")
    r.add_argument("--callback-calls", type=int, default=4, metavar="N", help="callbacks dialled at once")
    r.add_argument("--callback-ring", type=float, default=30.0, metavar="SECONDS",
                   help="ringing before a callback attempt counts as not answered")
    r.add_argument("--api-token", metavar="TOKEN",
                   help="token of the admin API (default: $IVR_API_TOKEN, else made once in DATA/api-token)")
    w = r.add_argument_group("browser callers (WebRTC, /softphone)")
    w.add_argument("--webrtc-max-calls", type=int, default=50, metavar="N",
                   help="browser calls at once; one more is told busy (default 50)")
    w.add_argument("--webrtc-origin", action="append", type=_origin, metavar="URL",
                   help="a page origin allowed to open the softphone socket besides our own (repeatable)")
    w.add_argument("--webrtc-token", metavar="TOKEN",
                   help="require ?token=TOKEN on the softphone socket (default: $IVR_WEBRTC_TOKEN, else none)")
    w.add_argument("--ice-server", action="append", type=_ice_server, metavar="URL",
                   help="STUN/TURN server for browser calls, told to each page and used by the server too, e.g. "
                        "stun:stun.example.org:3478 or turn:turn.example.org:3478 (repeatable; default none)")
    w.add_argument("--turn-secret", metavar="SECRET",
                   help="secret shared with the TURN server (coturn's static-auth-secret): time-limited "
                        "credentials for each call (default: $IVR_TURN_SECRET)")
    w.add_argument("--turn-ttl", type=_seconds, metavar="SECONDS",
                   help="how long a time-limited TURN credential is valid (default 3600)")
    w.add_argument("--turn-user", metavar="USER", help="static TURN user name, instead of --turn-secret")
    w.add_argument("--turn-password", metavar="PASSWORD",
                   help="password of --turn-user (default: $IVR_TURN_PASSWORD)")
    w.add_argument("--webrtc-host", action="append", type=_ip, metavar="ADDR",
                   help="host address offered to browsers (repeatable; default: every interface but loopback)")
    r.add_argument("--quiet", action="store_true", help="log warnings only")
    r.set_defaults(func=cmd_serve)

    t = sub.add_parser("test", help="call a SIP IVR and run caller journeys (YAML) against it; see docs/TESTING.md")
    t.add_argument("journeys", nargs="+", metavar="JOURNEY", help="journey files, or folders of them")
    t.add_argument("--target", metavar="URI", help="the IVR to call, e.g. sip:ivr@127.0.0.1:5060 "
                   "(overrides the journeys' own target)")
    t.add_argument("--driver", default="sip", metavar="NAME",
                   help="the caller's phone: sip (the harness's own, default), pyvoip (a pyVoIP phone that "
                   "registers and calls through a registrar), baresip (a baresip softphone per call)")
    t.add_argument("--registrar", metavar="HOST:PORT", help="pyvoip: the registrar to sign in to and call "
                   "through (default: the target's host and port)")
    t.add_argument("--bind", default="127.0.0.1", type=_ip, metavar="ADDR",
                   help="the address the harness's phone uses (default 127.0.0.1)")
    t.add_argument("--events", metavar="URL", help="when the target is `ivr serve`: its HTTP address, to read "
                   "each call's events too (exact prompt ids, flow coverage)")
    t.add_argument("--api-token", metavar="TOKEN", help="the engine's API token (default: $IVR_API_TOKEN)")
    t.add_argument("-k", dest="select", metavar="TEXT", help="only journeys whose name contains TEXT or tagged TEXT")
    t.add_argument("--load", type=int, default=0, metavar="N", help="load mode: N calls, journeys taken in turn")
    t.add_argument("--rate", type=float, default=1.0, metavar="PER_S", help="load mode: new calls a second")
    t.add_argument("--concurrency", type=int, default=0, metavar="N", help="load mode: at most N calls at once")
    t.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    t.add_argument("--html", metavar="FILE", help="write a self-contained HTML report (audio of failed steps)")
    t.add_argument("--json", metavar="FILE", help="write the results as JSON")
    t.add_argument("--coverage", metavar="FLOWS", help="measure flow coverage on this flow file (needs --events)")
    t.add_argument("--quiet", action="store_true", help="print only the reports' summary")
    t.set_defaults(func=cmd_test)
    return p


def cmd_test(args) -> int:
    from .harness.command import Options
    from .harness.command import main as run_tests

    if args.load < 0 or args.load > 100_000 or args.rate <= 0 or args.concurrency < 0:
        print("ivr test: --load 0..100000, --rate above 0, --concurrency 0 or more", file=sys.stderr)
        return 2
    return run_tests(Options(
        paths=args.journeys, target=args.target, driver=args.driver, bind=args.bind, registrar=args.registrar,
        events=args.events,
        api_token=args.api_token, select=args.select, load=args.load, rate=args.rate,
        concurrency=args.concurrency, junit=args.junit, html=args.html, json=args.json,
        coverage=args.coverage, quiet=args.quiet))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
