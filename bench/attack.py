"""Attack benchmark: prints one JSON object on stdout (progress goes to stderr).

A real `vlm-monitor serve` on loopback (API and viewer tokens set, one synthetic stream with
the motion analyzer) is attacked the way another host on the network could, one attack at a
time, every attack bounded in count and time:

  slowloris          raw sockets that send a request line, then one header line every 5 s,
                     never finishing the headers; how many the server still holds after 15 s
  expression_freeze  flows whose condition is `len(b'x' * 150000000) > 0` and
                     `round(1, -99999999)`: validate, create, run; 4xx once refused
  engineio_flood     Engine.IO polling handshakes (each one creates a session); 200 vs 429
  ws_video_big       4 /ws/video sessions sending ~3.5 MB JSON text messages, each parsed
                     and base64-decoded by the server
  token_in_logs      /ws/events and frame.jpg with ?token=; is the token in the server's logs
  big_result_extra   POST /api/results with a 7 MB extra field

For each: /health latency from a separate process polling every 20 ms on a new connection
(a timeout or refusal counts as 5000 ms) before (baseline) and during the attack, and the
server's RSS before, at peak during, and after. At the end, 60 s idle and RSS again, to see
whether memory comes back. If /health stays unanswered for 20 s the server is recorded as
frozen, killed (SIGKILL) and restarted on the same port for the remaining attacks; memory is
then compared from the restarted server's start (the first one's is kept as
``start_before_restart``).

Run: .venv/bin/python bench/attack.py [--quick] [--slow-sockets 300] [--eio-handshakes 2000]
The server runs whatever ``vlm_monitor`` the environment imports; to measure the last commit
while src/ holds uncommitted work:
    git archive HEAD src | tar -x -C /tmp/head && PYTHONPATH=/tmp/head/src .venv/bin/python ...
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from vlm_monitor.stats import percentile
from vlm_monitor.testing import ServerProcess, free_port, workdir

TIMEOUT_MS = 5000.0
PROBE_INTERVAL_S = 0.02
GOAL_HEALTH_P99_MS = 100
GOAL_RSS_PCT = 10
STREAM = "cam"
# With a provider key in the environment a /ws/video session would dial the real provider;
# the attack must stay on loopback.
PROVIDER_KEYS = ("DASHSCOPE_API_KEY", "OPENAI_API_KEY")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@dataclass
class Options:
    baseline_s: float
    duration_s: float
    slow_sockets: int
    slow_hold_s: float
    slow_interval_s: float
    eio_handshakes: int
    ws_clients: int
    ws_message_mb: float
    freeze_guard_s: float
    results_posts: int
    result_extra_mb: float
    idle_s: float


# ---------------------------------------------------------------- /health probe


def probe_main(url: str) -> int:
    """The probe child: one line per /health request, ``send_time ms ok``."""
    parent = os.getppid()
    # No keep-alive: a monitoring system connects anew each time, so the accept path (backlog,
    # file descriptors) is part of what is measured.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(timeout=TIMEOUT_MS / 1000, limits=limits) as client:
        while os.getppid() == parent:
            sent = time.time()
            t0 = time.perf_counter()
            try:
                ok = client.get(url + "/health").status_code == 200
                ms = (time.perf_counter() - t0) * 1000
            except httpx.HTTPError:
                ok = False
            if not ok:
                ms = TIMEOUT_MS
            try:
                print(f"{sent:.4f} {ms:.3f} {int(ok)}", flush=True)
            except BrokenPipeError:
                return 0
            time.sleep(max(0.0, PROBE_INTERVAL_S - (time.perf_counter() - t0)))
    return 0


class HealthMonitor:
    """Runs the probe in its own process so the attack clients' CPU use in this process
    (GIL, masking megabytes of WebSocket data) does not show up as server latency."""

    def __init__(self, url: str) -> None:
        self.samples: list[tuple[float, float, bool]] = []
        self.last_ok = time.time()
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--probe", url],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                sent_s, ms_s, ok_s = line.split()
                sent, ms, ok = float(sent_s), float(ms_s), ok_s == "1"
            except ValueError:
                continue
            with self._lock:
                self.samples.append((sent, ms, ok))
                if ok:
                    self.last_ok = max(self.last_ok, sent + ms / 1000)

    def unanswered_for(self) -> float:
        with self._lock:
            return time.time() - self.last_ok

    def wait_past(self, t: float, timeout: float = TIMEOUT_MS / 1000 + 1) -> None:
        """Until a request sent after ``t`` is reported: one pending at ``t`` is then in."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.samples and self.samples[-1][0] >= t:
                    return
            time.sleep(0.05)

    def window(self, t0: float, t1: float) -> list[float]:
        with self._lock:
            return [ms for sent, ms, _ in self.samples if t0 <= sent < t1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- the server and its memory


class Target:
    """The server under attack; restartable on the same port after a SIGKILL."""

    def __init__(self, wd: Path, api_token: str, viewer_token: str) -> None:
        self.wd, self.api_token, self.viewer_token = wd, api_token, viewer_token
        (wd / "media").mkdir(exist_ok=True)
        self.config = {
            "server": {
                "api_token": api_token,
                "viewer_token": viewer_token,
                "media_dir": str(wd / "media"),
            },
            "streams": [
                {
                    "id": STREAM,
                    "url": "synthetic://?fps=15&size=640x360",
                    "analyzers": ["motion"],
                }
            ],
        }
        self.port = free_port()
        self.generation = 0
        self.server: ServerProcess | None = None
        self.start()

    def start(self) -> None:
        self.generation += 1
        self.server = ServerProcess(
            self.wd, self.config, port=self.port, name=f"server{self.generation}"
        )

    def restart(self) -> None:
        """SIGKILL: a frozen event loop would not act on SIGTERM."""
        if self.server is not None and self.server.alive():
            self.server.kill()
        self.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=10)

    @property
    def pid(self) -> int:
        assert self.server is not None
        return self.server.proc.pid

    def alive(self) -> bool:
        return self.server is not None and self.server.alive()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def client(self, timeout: float = 10) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {self.api_token}"},
        )

    def log_files(self) -> list[Path]:
        logs = self.wd / "logs"
        files = sorted(self.wd.glob("server*.out"))
        return files + (sorted(p for p in logs.iterdir() if p.is_file()) if logs.exists() else [])


class RssSampler:
    def __init__(self, target: Target, interval: float = 0.1) -> None:
        self.target, self.interval = target, interval
        self.samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> float | None:
        try:
            return round(psutil.Process(self.target.pid).memory_info().rss / 2**20, 1)
        except (psutil.Error, AssertionError):
            return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            mb = self.now()
            if mb is not None:
                with self._lock:
                    self.samples.append((time.time(), mb))

    def peak(self, t0: float, t1: float) -> float | None:
        with self._lock:
            values = [mb for t, mb in self.samples if t0 <= t <= t1]
        return max(values) if values else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


# ---------------------------------------------------------------- attacks


def slowloris(target: Target, stop: threading.Event, opts: Options) -> dict[str, Any]:
    socks: list[socket.socket] = []
    connect_errors = send_errors = 0
    try:
        for _ in range(opts.slow_sockets):
            if stop.is_set():
                break
            try:
                s = socket.create_connection(("127.0.0.1", target.port), timeout=2)
                s.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\n".encode())
                s.setblocking(False)
                socks.append(s)
            except OSError:
                connect_errors += 1
        log(f"slowloris: {len(socks)} sockets open, trickling headers")
        alive = set(range(len(socks)))
        t0 = time.monotonic()
        line = 0
        while True:
            left = opts.slow_hold_s - (time.monotonic() - t0)
            if left <= 0 or stop.wait(min(opts.slow_interval_s, left)):
                break
            if time.monotonic() - t0 >= opts.slow_hold_s:
                break
            line += 1
            for i in list(alive):
                try:
                    socks[i].send(f"X-Slow-{line}: {line}\r\n".encode())
                except OSError:
                    alive.discard(i)
                    send_errors += 1
        held = round(time.monotonic() - t0, 1)
        state: collections.Counter[str] = collections.Counter()
        for s in socks:
            try:
                state["closed" if s.recv(1, socket.MSG_PEEK) == b"" else "answered"] += 1
            except BlockingIOError:
                state["open"] += 1
            except OSError:
                state["closed"] += 1
        return {
            "sockets": opts.slow_sockets,
            "connected": len(socks),
            "connect_errors": connect_errors,
            "held_s": held,
            "still_open": state["open"],
            "closed_by_server": state["closed"],
            # Some bytes back (e.g. 408) before closing: the server gave up on it too.
            "answered": state["answered"],
            "send_errors": send_errors,
        }
    finally:
        for s in socks:
            s.close()


def engineio_flood(target: Target, stop: threading.Event, opts: Options) -> dict[str, Any]:
    counts: collections.Counter[str] = collections.Counter()
    reasons: dict[str, str] = {}  # status -> the first such answer's body
    lock = threading.Lock()
    issued = 0
    t0 = time.monotonic()
    deadline = t0 + 2 * opts.duration_s
    params = {"EIO": "4", "transport": "polling", "token": target.viewer_token}

    def worker() -> None:
        nonlocal issued
        with httpx.Client(base_url=target.url, timeout=5) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                with lock:
                    if issued >= opts.eio_handshakes:
                        return
                    issued += 1
                try:
                    response = client.get("/socket.io/", params=params)
                    key = str(response.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                with lock:
                    counts[key] += 1
                    if key not in ("200", *reasons) and key.isdigit():
                        reasons[key] = response.text[:240]

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * opts.duration_s + 10)
    ok, refused = counts.pop("200", 0), counts.pop("429", 0)
    return {
        "handshakes": opts.eio_handshakes,
        "sent": issued,
        "ok_200": ok,
        "refused_429": refused,
        "other": dict(counts),
        "refusal_bodies": reasons,
        "elapsed_s": round(time.monotonic() - t0, 2),
    }


def big_video_message(mb: float) -> str:
    """A JPEG start marker and random bytes: over ``max_frame_bytes`` once decoded, so the
    server parses the JSON and decodes all the base64 before it can refuse the frame, and no
    frame is ever accepted, so the ``video_fps`` throttle (which skips decoding) never starts."""
    raw = int(mb * 1_000_000 * 3 / 4) - 32
    payload = b"\xff\xd8\xff\xe0" + os.urandom(raw - 4)
    return json.dumps({"type": "video", "data": base64.b64encode(payload).decode()})


def warm_up_realtime(target: Target) -> None:
    from websockets.sync.client import connect

    with connect(f"{target.ws_url}/ws/video?token={target.api_token}") as ws:
        ws.recv(timeout=10)  # "ready": the session, and the model, are up
        ws.send(json.dumps({"type": "audio", "data": base64.b64encode(bytes(3200)).decode()}))
        time.sleep(0.5)


def ws_video_big(target: Target, stop: threading.Event, opts: Options) -> dict[str, Any]:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    message = big_video_message(opts.ws_message_mb)
    url = f"{target.ws_url}/ws/video?token={target.api_token}"
    received: collections.Counter[str] = collections.Counter()
    closes: collections.Counter[str] = collections.Counter()
    sent, blocked = [0], [0]

    async def client() -> None:
        deadline = time.monotonic() + opts.duration_s
        try:
            async with connect(
                url,
                max_size=None,
                # An uncompressed flood: the server pays for every byte the attacker sends.
                compression=None,
                open_timeout=10,
                close_timeout=2,
                ping_interval=None,
            ) as ws:

                async def read() -> None:
                    async for raw in ws:
                        with contextlib.suppress(ValueError, AttributeError):
                            doc = json.loads(raw)
                            received[str(doc.get("code") or doc.get("type"))] += 1

                reader = asyncio.create_task(read())
                try:
                    while not stop.is_set() and not reader.done():
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        try:
                            await asyncio.wait_for(ws.send(message), left)
                        except TimeoutError:
                            # Our deadline, not the server's doing: it had stopped reading.
                            blocked[0] += 1
                            break
                        sent[0] += 1
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                        await reader
        except ConnectionClosed as exc:
            closes[str(exc.rcvd.code if exc.rcvd else "no_close_frame")] += 1
        except InvalidStatus as exc:
            closes[f"http_{exc.response.status_code}"] += 1
        except (TimeoutError, OSError) as exc:
            closes[type(exc).__name__] += 1

    async def main() -> None:
        tasks = [asyncio.create_task(client()) for _ in range(opts.ws_clients)]
        _, pending = await asyncio.wait(tasks, timeout=opts.duration_s + 15)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    t0 = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - t0
    return {
        "clients": opts.ws_clients,
        "message_mb": round(len(message) / 1e6, 2),
        "sent": sent[0],
        "sent_mb_per_s": round(sent[0] * len(message) / 1e6 / elapsed, 1),
        # Sends still waiting for the server to read (TCP backpressure) when time was up.
        "sends_blocked_at_end": blocked[0],
        # One error per message the server decoded (frame_too_large), so this is what it
        # processed; rate_limited and the like show refusals before decoding.
        "server_events": dict(received),
        "closes": dict(closes),
    }


EXPRESSIONS = {
    "bytes_150mb": "len(b'x' * 150000000) > 0",
    "round_huge": "round(1, -99999999)",
}


def _flow(key: str) -> dict[str, Any]:
    return {
        "id": f"attack-{key.replace('_', '-')}",
        "trigger": {"kind": "manual"},
        "nodes": [
            # A condition needs an input; a zero wait is the cheapest one.
            {"id": "start", "type": "wait", "params": {"seconds": 0}},
            {"id": "check", "type": "condition", "params": {"expr": EXPRESSIONS[key]}},
        ],
        "edges": [["start", "check"]],
    }


def _status(call: Callable[[], httpx.Response]) -> tuple[int | str, Any]:
    try:
        response = call()
    except httpx.TimeoutException:
        return "timeout", None
    except httpx.HTTPError as exc:
        return type(exc).__name__, None
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body


def _why(status: int | str, body: Any) -> str | None:
    """A refusal's reason, short: which check said no matters when comparing runs."""
    if isinstance(status, int) and status < 400:
        return None
    return json.dumps(body)[:240] if body is not None else None


def expression_freeze(target: Target, stop: threading.Event, opts: Options) -> dict[str, Any]:
    out: dict[str, Any] = {}
    deadline = time.monotonic() + opts.duration_s
    with target.client(timeout=10) as client:
        for key in EXPRESSIONS:
            if stop.is_set():
                break
            flow = _flow(key)
            res: dict[str, Any] = {}
            res["validate"], body = _status(
                lambda f=flow: client.post("/api/flows/validate", json=f)
            )
            if isinstance(body, dict) and "valid" in body:
                res["valid"] = body["valid"]
                errors = body.get("errors")
                res["validate_errors"] = json.dumps(errors)[:240] if errors else None
            res["create"], body = _status(lambda f=flow: client.post("/api/flows", json=f))
            res["create_error"] = _why(res["create"], body)
            if res["create"] == 201:
                fid = flow["id"]
                res["run"], body = _status(lambda fid=fid: client.post(f"/api/flows/{fid}/run"))
                res["run_error"] = _why(res["run"], body)
                stop.wait(2)  # the run evaluates the condition on the server meanwhile
            out[key] = res
            log(f"expression_freeze: {key}: {res}")
    # Whatever froze the server is now running; wait for the loop to come back or the guard.
    while not stop.wait(0.2):
        if time.monotonic() >= deadline and target.alive():
            if _health_ok(target):
                break
    return out


def _health_ok(target: Target) -> bool:
    try:
        return httpx.get(target.url + "/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def delete_attack_flows(target: Target) -> None:
    with target.client(timeout=5) as client:
        for key in EXPRESSIONS:
            with contextlib.suppress(httpx.HTTPError):
                client.delete(f"/api/flows/{_flow(key)['id']}")


def token_in_logs(target: Target, stop: threading.Event, opts: Options) -> dict[str, Any]:
    from websockets.sync.client import connect

    token = target.api_token
    out: dict[str, Any] = {}
    try:
        with connect(f"{target.ws_url}/ws/events?token={token}", open_timeout=10) as ws:
            out["ws_events_hello"] = json.loads(ws.recv(timeout=10)).get("type") == "hello"
    except Exception as exc:  # any failure is a result here, not a crash of the bench
        out["ws_events_hello"] = f"{type(exc).__name__}: {exc}"
    out["frame_status"], _ = _status(
        lambda: httpx.get(
            f"{target.url}/api/streams/{STREAM}/frame.jpg", params={"token": token}, timeout=10
        )
    )
    stop.wait(1.0)  # log handlers flush per record; this is for the console pipe
    where: dict[str, int] = {}
    example = None
    for path in target.log_files():
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if token in ln]
        if lines:
            where[path.name] = len(lines)
            example = example or lines[0].replace(token, "<API_TOKEN>")[:300]
    out.update(token_logged=bool(where), where=where, example=example)
    return out


def big_result_extra(target: Target, stop: threading.Event, opts: Options) -> dict[str, Any]:
    blob = "x" * int(opts.result_extra_mb * 1_000_000)
    statuses: list[int | str] = []
    reasons: list[str] = []
    gap = opts.duration_s / max(1, opts.results_posts)
    with target.client(timeout=20) as client:
        for _ in range(opts.results_posts):
            if stop.is_set():
                break
            now = time.time()
            doc = {
                "stream": STREAM,
                "result": "attack",
                "video_info": {},
                "inference_start_time": now,
                "inference_end_time": now,
                "blob": blob,
            }
            t0 = time.monotonic()
            status, body = _status(lambda d=doc: client.post("/api/results", json=d))
            statuses.append(status)
            why = _why(status, body)
            if why and why not in reasons:
                reasons.append(why)
            stop.wait(max(0.0, gap - (time.monotonic() - t0)))
    return {
        "extra_mb": opts.result_extra_mb,
        "posts": len(statuses),
        "statuses": statuses,
        "accepted": sum(1 for s in statuses if s == 201),
        "refusals": reasons,
    }


Attack = Callable[[Target, threading.Event, Options], dict[str, Any]]
# expression_freeze comes before the attacks that leave memory behind: where it still freezes
# the server, the restart then wipes none of what the final RSS readings are meant to show.
ATTACKS: list[tuple[str, Attack]] = [
    ("slowloris", slowloris),
    ("expression_freeze", expression_freeze),
    ("engineio_flood", engineio_flood),
    ("ws_video_big", ws_video_big),
    ("token_in_logs", token_in_logs),
    ("big_result_extra", big_result_extra),
]


# ---------------------------------------------------------------- running them


def health_stats(baseline: list[float], during: list[float]) -> dict[str, Any]:
    return {
        "baseline_p50": percentile(baseline, 50, 1),
        "baseline_p99": percentile(baseline, 99, 1),
        "p50": percentile(during, 50, 1),
        "p99": percentile(during, 99, 1),
        "max": round(max(during), 1) if during else None,
        "samples": len(during),
        "failed": sum(1 for ms in during if ms >= TIMEOUT_MS),
    }


def run_attack(
    name: str,
    attack: Attack,
    target: Target,
    health: HealthMonitor,
    rss: RssSampler,
    opts: Options,
) -> dict[str, Any]:
    log(f"{name}: baseline {opts.baseline_s:.0f} s")
    rss_before = rss.now()
    b0 = time.time()
    time.sleep(opts.baseline_s)
    t0 = time.time()
    stop = threading.Event()
    result: dict[str, Any] = {}

    def body() -> None:
        try:
            result.update(attack(target, stop, opts))
        except Exception as exc:  # reported in the JSON; the other attacks still run
            result["error"] = f"{type(exc).__name__}: {exc}"

    log(f"{name}: attacking")
    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    # The attacks bound themselves; this is the backstop if one does not.
    cap = t0 + opts.duration_s + max(opts.slow_hold_s, opts.freeze_guard_s) + 20
    frozen = died = False
    while thread.is_alive():
        thread.join(0.2)
        if not target.alive():
            died = True
            break
        if health.unanswered_for() > opts.freeze_guard_s:
            frozen = True
            break
        if time.time() > cap:
            break
    t1 = time.time()
    stop.set()
    rss_peak = rss.peak(t0, t1)
    if frozen or died:
        log(f"{name}: server {'frozen' if frozen else 'died'}; SIGKILL and restart")
        target.restart()
    thread.join(15)
    if thread.is_alive():
        result["error"] = "attack thread did not stop"
    health.wait_past(t1)
    # What is freed right after the attack, not what is freed over time; a restarted server
    # also gets its stream going, as at the start.
    time.sleep(3 if frozen or died else 2)
    out: dict[str, Any] = {
        "health_ms": health_stats(health.window(b0, t0), health.window(t0, t1)),
        "rss_mb": {"before": rss_before, "peak": rss_peak, "after": rss.now()},
        "duration_s": round(t1 - t0, 1),
        **result,
    }
    if frozen or died:
        out.update(frozen=frozen, server_died=died, restarted=True)
    elif name == "expression_freeze":
        out["frozen"] = False
    if name == "expression_freeze":
        delete_attack_flows(target)
    log(f"{name}: health {out['health_ms']} rss {out['rss_mb']}")
    return out


def options(args: argparse.Namespace) -> Options:
    if args.quick:
        return Options(
            # Held past the default 10 s header timeout, or a quick run could not tell.
            baseline_s=1, duration_s=3, slow_sockets=min(args.slow_sockets, 50), slow_hold_s=12,
            slow_interval_s=4, eio_handshakes=min(args.eio_handshakes, 200), ws_clients=2,
            ws_message_mb=args.ws_message_mb, freeze_guard_s=8, results_posts=1,
            result_extra_mb=args.result_extra_mb, idle_s=0,
        )  # fmt: skip
    return Options(
        baseline_s=3, duration_s=10, slow_sockets=args.slow_sockets, slow_hold_s=15,
        slow_interval_s=5, eio_handshakes=args.eio_handshakes, ws_clients=4,
        ws_message_mb=args.ws_message_mb, freeze_guard_s=20, results_posts=3,
        result_extra_mb=args.result_extra_mb, idle_s=60,
    )  # fmt: skip


@contextlib.contextmanager
def terminated_on_sigterm() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop the server and the probe."""

    def raise_exit(*_: object) -> None:
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smoke run: short, small, no idle")
    parser.add_argument("--slow-sockets", type=int, default=300)
    parser.add_argument("--eio-handshakes", type=int, default=2000)
    parser.add_argument("--ws-message-mb", type=float, default=3.5)
    parser.add_argument("--result-extra-mb", type=float, default=7.0)
    parser.add_argument("--only", help="comma-separated attack names (default: all)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return probe_main(args.probe)
    opts = options(args)
    chosen = [(n, a) for n, a in ATTACKS if not args.only or n in args.only.split(",")]
    for key in PROVIDER_KEYS:
        os.environ.pop(key, None)
    api_token = "api-" + secrets.token_hex(16)
    viewer_token = "view-" + secrets.token_hex(16)
    report: dict[str, Any] = {"attacks": {}}
    with terminated_on_sigterm(), workdir() as wd:
        log("starting the server")
        target = Target(wd, api_token, viewer_token)
        health: HealthMonitor | None = None
        rss: RssSampler | None = None
        try:
            health = HealthMonitor(target.url)
            rss = RssSampler(target)
            time.sleep(3)  # the stream starts and the analyzer warms up
            # The first /ws/video session loads the shared speech-detection model (onnxruntime,
            # ~45 MB, kept for the process's life): part of a served server's footprint, not
            # something an attack leaves behind, so it is loaded before the start is taken.
            rss_cold = rss.now()
            warm_up_realtime(target)
            time.sleep(1)
            rss_start = rss.now()
            report["rss_mb_model_load"] = round(rss_start - rss_cold, 1)
            rss_first: float | None = None
            for name, attack in chosen:
                result = run_attack(name, attack, target, health, rss, opts)
                report["attacks"][name] = result
                if result.get("restarted"):
                    # Memory is compared within one process: the restarted one from here on.
                    rss_first = rss_first or rss_start
                    rss_start = result["rss_mb"]["after"]
            rss_end = rss.now()
            rss_idle = None
            if opts.idle_s:
                log(f"idle {opts.idle_s:.0f} s")
                time.sleep(opts.idle_s)
                rss_idle = rss.now()
            report["rss_mb"] = {"start": rss_start, "end": rss_end, "after_60s": rss_idle}
            if rss_first is not None:
                report["rss_mb"]["start_before_restart"] = rss_first
            report["server_restarts"] = target.generation - 1
        finally:
            if rss is not None:
                rss.stop()
            if health is not None:
                health.stop()
            target.stop()
    report["goal"] = {"health_p99_ms": GOAL_HEALTH_P99_MS, "rss_within_pct": GOAL_RSS_PCT}
    report["met"] = met(report)
    print(json.dumps(report))
    return 0


def met(report: dict[str, Any]) -> dict[str, Any]:
    per_attack = {
        name: (a["health_ms"]["p99"] is not None and a["health_ms"]["p99"] <= GOAL_HEALTH_P99_MS)
        for name, a in report["attacks"].items()
    }
    rss = report["rss_mb"]
    change = None
    if rss["after_60s"] is not None and rss["start"]:
        change = round((rss["after_60s"] - rss["start"]) / rss["start"] * 100, 1)
    return {
        "health_p99_ms": per_attack,
        "health_all": all(per_attack.values()),
        "rss_change_pct": change,
        "rss_within_pct": None if change is None else abs(change) <= GOAL_RSS_PCT,
    }


if __name__ == "__main__":
    raise SystemExit(main())
