"""Command line: ``vlm-monitor serve|demo|camera|worker|stop``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from vlm_monitor.camera.scene import SCENES
from vlm_monitor.config import Config, ConfigError, build_config, load_config, parse_size
from vlm_monitor.registry import PluginError
from vlm_monitor.vlm.replay import add_arguments as add_replay_arguments

log = logging.getLogger("vlm_monitor.cli")
RUN_DIR_NAME = "run"


def _size(value: str) -> tuple[int, int]:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlm-monitor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the backend")
    serve.add_argument("--config", help="YAML or JSON configuration file")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    demo = sub.add_parser("demo", help="test camera + backend, nothing external needed")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--camera-port", type=int, default=0, help="0 = a free port")
    demo.add_argument("--duration", type=float, help="exit cleanly after S seconds")
    demo.add_argument("--data-dir", default="./data")

    cam = sub.add_parser("camera", help="the test TCP camera (MPEG-TS/H.264)")
    cam.add_argument("--host", default="127.0.0.1")
    cam.add_argument("--port", type=int, default=8888)
    cam.add_argument("--fps", type=float, default=15)
    cam.add_argument("--size", type=_size, default=(1280, 720))
    cam.add_argument("--single-client", action="store_true", help="refuse a 2nd client")
    cam.add_argument("--ready-file", help="write the bound port here once listening")
    cam.add_argument(
        "--scene", choices=SCENES, default="moving", help="face: a pulsing face; two_faces: two"
    )
    cam.add_argument("--bpm", type=float, default=72.0, help="the face scene's heart rate")

    worker = sub.add_parser("worker", help="separate inference service, frames via the backend")
    worker.add_argument(
        "--config", help="the stream's analyzers/clips, backend_url/frame_rate (or stream.tcp form)"
    )
    worker.add_argument("--backend-url", help="default: config, else http://127.0.0.1:8080")
    worker.add_argument("--stream", help="default: the config's first stream")
    worker.add_argument("--frame-rate", type=float, help="frames/s; default: config, else 5")
    worker.add_argument("--name", default="worker")
    worker.add_argument("--duration", type=float, help="exit after S seconds with a summary")
    only = worker.add_mutually_exclusive_group()
    only.add_argument(
        "--clips",
        action="store_true",
        help="run only the stream's clip processor here; results go to the backend",
    )
    only.add_argument(
        "--count-only",
        action="store_true",
        help="infer nothing: count the frames and measure their latency",
    )
    worker.add_argument("--data-dir", default="./data-worker", help="clip files (with --clips)")
    worker.add_argument(
        "--redis-url",
        help="process jobs from Redis Streams (providers and bus channel from --config)",
    )
    worker.add_argument(
        "--jobs",
        type=_job_kinds,
        default=["clip", "analyze"],
        help="with --redis-url: job kinds to take, comma-separated (default: clip,analyze)",
    )
    worker.add_argument(
        "--claim-idle",
        type=float,
        default=30.0,
        help="take over jobs idle S s, and streams whose worker is silent S s",
    )
    worker.add_argument("--max-attempts", type=int, default=3, help="then: dead-letter stream")

    replay = sub.add_parser(
        "replay",
        help="put recorded VLM questions to another provider, prompt or schema and compare",
    )
    add_replay_arguments(replay)

    stop = sub.add_parser("stop", help="stop what 'demo' started")
    stop.add_argument("--data-dir", default="./data")
    return parser


def main(argv: list[str] | None = None) -> int:
    from vlm_monitor.logging_setup import setup_logging

    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        print(f"vlm-monitor: {_subcommand_needed(argv)}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "replay":  # prints its findings; nothing worth a log file
            from vlm_monitor.vlm.replay import command as replay

            return replay(args)
        setup_logging(args.command, os.environ.get("VLM_MONITOR_LOG_DIR", "logs"))
        if args.command == "demo":
            return _demo(args)
        if args.command == "camera":
            from vlm_monitor.camera.server import run_camera

            run_camera(
                args.host,
                args.port,
                args.fps,
                args.size,
                args.single_client,
                args.ready_file,
                args.scene,
                args.bpm,
            )
            return 0
        if args.command == "worker":
            from vlm_monitor.worker.main import command

            return command(args)
        return _stop(Path(args.data_dir) / RUN_DIR_NAME)
    except (ConfigError, PluginError) as exc:
        print(f"vlm-monitor: {exc}", file=sys.stderr)
        return 2


def _subcommand_needed(argv: list[str]) -> str:
    config = "F"
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            config = argv[i + 1]
        elif arg.startswith("--config="):
            config = arg.partition("=")[2]
    return (
        f"a subcommand is needed: `vlm-monitor serve --config {config}` to run the server "
        "(or demo, camera, worker, stop; `vlm-monitor --help` lists them)"
    )


def _run_server(config: Config, duration: float | None = None) -> None:
    import uvicorn

    from vlm_monitor.api.http_protocol import protocol_class
    from vlm_monitor.app import create_app

    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.server.host,
            port=config.server.port,
            http=protocol_class(config.server.header_timeout_s, app.state.services.refused),
            log_config=None,
            ws_ping_interval=20,
            # A bigger WebSocket message is refused (close 1009) before it is buffered.
            ws_max_size=config.realtime.max_message_bytes + 65536,
            # Messages a client has sent and we have not read yet: uvicorn's default (32) lets
            # one /ws/video client park 32 x 4 MB here; a short queue pushes back instead.
            ws_max_queue=4,
            timeout_graceful_shutdown=3,
        )
    )

    def stop(*_: object) -> None:
        server.should_exit = True

    # uvicorn handles SIGTERM/SIGINT while serving, then raises them again once it has shut
    # down gracefully; with these handlers in place that second one is a no-op, so a clean
    # SIGTERM stop exits 0 (what service managers expect), not -15.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        if duration is not None:
            done, _ = await asyncio.wait({task}, timeout=duration)
            if not done:
                server.should_exit = True
        await task

    asyncio.run(run())


def _job_kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = set(kinds) - {"clip", "analyze"}
    if not kinds or unknown:
        raise argparse.ArgumentTypeError(f"job kinds are clip and analyze, not {text!r}")
    return kinds


def _serve(args: argparse.Namespace) -> int:
    from vlm_monitor.logging_setup import setup_logging

    config = load_config(args.config)
    _check_flows(config)
    setup_logging("vlm-monitor", config.server.log_dir, secrets=config.secrets())
    if args.host:
        config.server.host = args.host
    if args.port is not None:
        config.server.port = args.port
    if config.server.host not in ("127.0.0.1", "localhost", "::1") and not config.server.api_token:
        message = (
            f"serving on {config.server.host} without server.api_token: anyone who can reach "
            "this port can add streams, read cameras and spend VLM credit; set "
            "server.api_token (or VLM_MONITOR_API_TOKEN)"
        )
        print(f"vlm-monitor: WARNING: {message}", file=sys.stderr)
        log.warning(
            "no api token on a public address", extra={"fields": {"host": config.server.host}}
        )
    if config.webrtc.auto_create and not config.webrtc.publish_token:
        message = (
            "webrtc.auto_create without webrtc.publish_token: anyone who can reach this port "
            "can create streams by publishing to /whip/<id>"
        )
        print(f"vlm-monitor: WARNING: {message}", file=sys.stderr)
        log.warning("open WHIP auto-create", extra={"fields": {"host": config.server.host}})
    _run_server(config)
    return 0


def _check_flows(config: Config) -> None:
    """Flow definitions are checked here, before serving, so a bad one names its node and
    the server does not start (the graph checks need the node registry, which config.py,
    imported by everything, must not import)."""
    from vlm_monitor.flows.graph import FlowValidationError
    from vlm_monitor.flows.manager import parse_flow

    problems = []
    for i, doc in enumerate(config.flows):
        try:
            parse_flow(doc)
        except FlowValidationError as exc:
            name = doc.get("id", i) if isinstance(doc, dict) else i
            problems += [f"flows.{name}: {e}" for e in exc.errors]
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def wait_ready_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Port a child wrote to ``path`` once listening (no probe connection: the camera may be
    single-client)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"test camera exited with code {proc.returncode}")
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text())
        time.sleep(0.05)
    raise RuntimeError(f"test camera not ready within {timeout} s")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _demo(args: argparse.Namespace) -> int:
    run_dir = Path(args.data_dir) / RUN_DIR_NAME
    run_dir.mkdir(parents=True, exist_ok=True)
    ready = run_dir / "camera.port"
    ready.unlink(missing_ok=True)
    camera = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vlm_monitor",
            "camera",
            "--port",
            str(args.camera_port),
            "--single-client",
            "--fps",
            "15",
            "--scene",
            "face",
            "--ready-file",
            str(ready),
        ]
    )
    (run_dir / "camera.pid").write_text(str(camera.pid))
    (run_dir / "demo.pid").write_text(str(os.getpid()))
    try:
        cam_port = wait_ready_file(ready, camera)
        config = build_config(
            {
                "server": {"port": args.port, "data_dir": args.data_dir},
                "vlm": {"providers": [{"name": "offline", "kind": "local"}]},
                "streams": [
                    {
                        "id": "demo",
                        "url": f"tcp://127.0.0.1:{cam_port}",
                        "analyzers": ["motion", "emotion", "heart_rate"],
                        "clips": {
                            "clip_seconds": 5,
                            "frames_per_clip": 8,
                            "provider": "offline",
                            "sampling": "motion",
                        },
                    }
                ],
            }
        )
        print(
            f"\n  vlm-monitor demo: open http://{config.server.host}:{config.server.port}/\n"
            f"  (test camera on tcp://127.0.0.1:{cam_port}; Ctrl-C or 'vlm-monitor stop' "
            "ends it)\n",
            flush=True,
        )
        signal.signal(signal.SIGTERM, _interrupt)
        with contextlib.suppress(KeyboardInterrupt):
            _run_server(config, args.duration)
    finally:
        camera.terminate()
        try:
            camera.wait(5)
        except subprocess.TimeoutExpired:
            camera.kill()
        for name in ("camera.pid", "demo.pid", "camera.port"):
            (run_dir / name).unlink(missing_ok=True)
    return 0


def _stop(run_dir: Path) -> int:
    pids = sorted(run_dir.glob("*.pid")) if run_dir.exists() else []
    if not pids:
        print(f"vlm-monitor: nothing to stop (no pid files in {run_dir})")
        return 0
    for pid_file in pids:
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            print(f"stopped {pid_file.stem} (pid {pid})")
        except (ValueError, ProcessLookupError):
            print(f"{pid_file.stem}: not running")
        pid_file.unlink(missing_ok=True)
    return 0
