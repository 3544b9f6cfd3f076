"""Flows through the HTTP API of a real backend: validation, concurrent start/stop, stop
during a run, and an end-to-end flow on the test camera with a real webhook receiver."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import websockets

from vlm_monitor.testing import wait_until


def wait(node_id: str, seconds: float) -> dict:
    return {"id": node_id, "type": "wait", "params": {"seconds": seconds}}


def test_bad_definitions_get_422_naming_the_node(server) -> None:
    srv = server()
    bad = {
        "unknown type": {"nodes": [{"id": "x", "type": "teleport"}]},
        "cycle": {"nodes": [wait("a", 0), wait("b", 0)], "edges": [["a", "b"], ["b", "a"]]},
        "type mismatch": {
            "nodes": [wait("w", 0), {"id": "o", "type": "ocr"}],
            "edges": [["w", "o"]],
        },
        "bad params": {"nodes": [wait("w", "soon")]},
        "missing input": {"nodes": [{"id": "c", "type": "condition", "params": {"expr": "true"}}]},
    }
    expected = {
        "unknown type": "node 'x': unknown type 'teleport'",
        "cycle": "node 'a': cycle a -> b -> a",
        "type mismatch": "node 'o': input from 'w' is data",
        "bad params": "node 'w': params.seconds",
        "missing input": "node 'c': condition needs at least 1 input(s)",
    }
    with srv.client() as c:
        for name, doc in bad.items():
            r = c.post("/api/flows", json={"id": "f", **doc})
            assert r.status_code == 422, (name, r.text)
            assert expected[name] in r.json()["error"], (name, r.json())
            assert isinstance(r.json()["detail"], list)
            check = c.post("/api/flows/validate", json={"id": "f", **doc}).json()
            assert check["valid"] is False and any(expected[name] in e for e in check["errors"])
        assert c.post("/api/flows", content=b"{nope").status_code == 422
        assert c.get("/api/flows").json() == []  # nothing was stored
        ok = c.post("/api/flows", json={"id": "f", "nodes": [wait("a", 0)]})
        assert ok.status_code == 201 and ok.json()["state"] == "stopped"
        assert c.post("/api/flows", json={"id": "f", "nodes": [wait("a", 0)]}).status_code == 409
        assert c.post("/api/flows/nope/start").status_code == 404
        types = {t["type"] for t in c.get("/api/flow-nodes").json()}
        assert {"frame", "clip", "motion", "ocr", "emotion", "heart_rate", "vlm", "condition",
                "wait", "webhook", "alert", "watch", "store", "broadcast"} <= types  # fmt: skip


def test_manual_run_parallel_branches_and_runs_history(server) -> None:
    srv = server()
    doc = {
        "id": "par",
        "nodes": [wait("a", 0), wait("b", 1), wait("c", 1), wait("d", 0)],
        "edges": [["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"]],
    }
    with srv.client() as c:
        assert c.post("/api/flows", json=doc).status_code == 201
        run_id = c.post("/api/flows/par/run").json()["run_id"]
        run = wait_until(
            lambda: (
                (r := c.get(f"/api/flows/par/runs/{run_id}").json())["status"] != "running" and r
            ),
            10,
        )
        assert run["status"] == "succeeded" and run["duration_s"] < 1.6
        assert [n["status"] for n in run["nodes"]] == ["succeeded"] * 4
        runs = wait_until(lambda: c.get("/api/flows/par/runs").json(), 5)
        assert runs[0]["run_id"] == run_id and runs[0]["finished_at"] > runs[0]["started_at"]
        for key in ("run_id", "status", "started_at", "finished_at", "duration_s", "nodes"):
            assert key in runs[0]


def test_stop_during_a_run_leaves_nothing_running(server) -> None:
    srv = server()
    doc = {
        "id": "slow",
        "trigger": {"kind": "interval", "seconds": 0.2},
        "nodes": [wait("a", 30), wait("b", 30), wait("c", 0)],
        "edges": [["a", "c"], ["b", "c"]],
    }
    with srv.client() as c:
        baseline = c.get("/api/status").json()["threads"]
        c.post("/api/flows", json=doc)
        assert c.post("/api/flows/slow/start").json()["state"] == "running"
        wait_until(lambda: c.get("/api/flows/slow").json()["instance"]["active_runs"], 5)
        assert c.get("/api/flows/slow").json()["live_tasks"] >= 3  # trigger, run, 2 nodes
        stopped = c.post("/api/flows/slow/stop").json()
        assert stopped["state"] == "stopped" and stopped["live_tasks"] == 0
        run = c.get("/api/flows/slow/runs").json()[0]
        assert run["status"] == "cancelled"
        assert {n["id"]: n["status"] for n in run["nodes"]} == {
            "a": "cancelled",
            "b": "cancelled",
            "c": "skipped",
        }
        assert c.get("/api/status").json()["threads"] <= baseline + 1


def test_concurrent_start_stop_of_20_flows(server) -> None:
    srv = server()
    ids = [f"f{i}" for i in range(20)]

    async def hammer() -> list[int]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as c:
            for fid in ids:
                doc = {
                    "id": fid,
                    "trigger": {"kind": "interval", "seconds": 0.1},
                    "nodes": [wait("a", 0.05), wait("b", 0.05)],
                    "edges": [["a", "b"]],
                }
                assert (await c.post("/api/flows", json=doc)).status_code == 201
            rng = random.Random(7)
            ops = [(rng.choice(ids), rng.choice(("start", "stop"))) for _ in range(200)]

            async def client(chunk: list[tuple[str, str]]) -> list[int]:
                out = []
                async with httpx.AsyncClient(base_url=srv.url, timeout=30) as own:
                    for fid, op in chunk:
                        out.append((await own.post(f"/api/flows/{fid}/{op}")).status_code)
                return out

            chunks = [ops[i::10] for i in range(10)]  # 10 clients at once
            codes = [code for part in await asyncio.gather(*map(client, chunks)) for code in part]
            # Final state per flow: one last op each, in order.
            for fid in ids:
                await c.post(
                    f"/api/flows/{fid}/stop" if int(fid[1:]) % 2 else f"/api/flows/{fid}/start"
                )
            return codes

    codes = asyncio.run(hammer())
    assert set(codes) == {200}
    with srv.client() as c:
        listed = {f["id"]: f for f in c.get("/api/flows").json()}
        assert set(listed) == set(ids)
        for fid, f in listed.items():
            want = "stopped" if int(fid[1:]) % 2 else "running"
            assert f["state"] == want, (fid, f)
            if want == "stopped":
                assert f["live_tasks"] == 0
        assert c.get("/api/status").json()["flows_running"] == 10
        assert "Traceback" not in srv.output()


class Receiver:
    """A real HTTP server that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_end_to_end_frame_motion_ocr_condition_alert_webhook(camera, server, receiver) -> None:
    cam = camera(size="640x360", fps=15)
    srv = server(
        {
            "server": {"webhook_allow": ["127.0.0.1"]},  # the receiver is on this machine
            "streams": [{"id": "cam", "url": cam.url}],
        }
    )
    flow = {
        "id": "watchdog",
        "stream": "cam",
        "trigger": {"kind": "interval", "seconds": 1},
        "nodes": [
            {"id": "frame", "type": "frame"},
            {"id": "motion", "type": "motion"},
            {"id": "ocr", "type": "ocr", "params": {"roi": [0, 260, 320, 60]}},
            {
                "id": "busy",
                "type": "condition",
                "params": {"expr": "motion.moving and len(ocr.text) > 0"},
            },
            {
                "id": "alarm",
                "type": "alert",
                "params": {"message": "movement on $stream, text: $ocr", "cooldown_s": 0},
            },
            {"id": "notify", "type": "webhook", "params": {"url": receiver.url}},
        ],
        "edges": [
            ["frame", "motion"],
            ["frame", "ocr"],
            ["motion", "busy"],
            ["ocr", "busy"],
            ["busy", "alarm"],
            ["busy", "notify"],
        ],
    }

    async def run() -> list[dict]:
        seen: list[dict] = []
        async with websockets.connect(srv.url.replace("http", "ws") + "/ws/events") as ws:
            async with httpx.AsyncClient(base_url=srv.url) as c:
                wait_live = 0
                while (await c.get("/api/streams/cam")).json()[
                    "state"
                ] != "live" and wait_live < 100:
                    await asyncio.sleep(0.1)
                    wait_live += 1
                assert (await c.post("/api/flows", json=flow)).status_code == 201
                assert (await c.post("/api/flows/watchdog/start")).status_code == 200
            async with asyncio.timeout(30):
                while not (any(e["type"] == "alert" for e in seen) and receiver.bodies):
                    seen.append(json.loads(await ws.recv()))
        return seen

    events = asyncio.run(run())
    alert = next(e for e in events if e["type"] == "alert")
    assert alert["flow"] == "watchdog" and alert["stream"] == "cam"
    assert alert["message"].startswith("movement on cam, text: ")
    # The frame node's picture, named although the alert only saw the condition's gate.
    assert 0 <= alert["created_at"] - alert["frame_ts"] < 10
    nodes = [e for e in events if e["type"] == "flow.node"]
    started = {e["node"]: e for e in nodes if e["status"] == "running"}
    assert {"motion", "ocr"} <= set(started)  # both branches ran
    hook = receiver.bodies[0]
    assert hook["flow"] == "watchdog" and hook["inputs"]["busy"]["value"] is True
    with srv.client() as c:
        stored = c.get("/api/alerts", params={"flow": "watchdog"}).json()
        assert stored and stored[0]["id"] == alert["id"] and stored[0]["key"] == "watchdog"
        # One incident, one alert: while the condition holds, no second alert.
        wait_until(lambda: len(c.get("/api/flows/watchdog/runs").json()) >= 4, 15)
        assert len(c.get("/api/alerts", params={"flow": "watchdog"}).json()) == 1
        last = c.get("/api/flows/watchdog/runs").json()[0]
        assert {n["id"] for n in last["nodes"]} == {
            "frame",
            "motion",
            "ocr",
            "busy",
            "alarm",
            "notify",
        }


def test_clip_vlm_watch_store_broadcast_with_a_vlm_speaking_openai(server, tmp_path) -> None:
    """The VLM is a local server speaking OpenAI's chat-completions wire format (a paid API
    cannot be reached here); the test checks what we send it."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_vlm import FakeVlm

    fake = FakeVlm(answer='{"answer": "yes", "next_check_s": 30, "reason": "a ball"}')
    try:
        srv = server(
            {
                "vlm": {
                    "providers": [
                        {
                            "name": "fake",
                            "kind": "openai",
                            "base_url": fake.url + "/v1",
                            "model": "fake-vl",
                        }
                    ]
                },
                "streams": [{"id": "cam", "url": "synthetic://?fps=15&size=640x360"}],
            }
        )
        flow = {
            "id": "seen",
            "stream": "cam",
            "nodes": [
                {"id": "clip", "type": "clip", "params": {"seconds": 2, "frames": 4}},
                {"id": "ask", "type": "vlm", "params": {"prompt": "What happens on $stream?"}},
                {"id": "look", "type": "watch", "params": {"question": "Is there a ball?"}},
                {"id": "keep", "type": "store", "params": {"label": "ball"}},
                {
                    "id": "tell",
                    "type": "broadcast",
                    "params": {"type": "demo.seen", "message": "$ask"},
                },
            ],
            "edges": [
                ["clip", "ask"],
                ["ask", "keep"],
                ["look", "keep"],
                ["look", "tell"],
                ["ask", "tell"],
            ],
        }
        with srv.client() as c:
            assert c.post("/api/flows", json=flow).status_code == 201
            c.post("/api/flows/seen/start")
            wait_until(lambda: c.get("/api/streams/cam").json()["state"] == "live", 10)

            def finished(run_id: str) -> dict | None:
                run = c.get(f"/api/flows/seen/runs/{run_id}").json()
                return run if run["status"] != "running" else None

            import time

            time.sleep(2.5)  # the clip buffer fills while the flow runs
            runs = []
            for _ in range(2):
                run_id = c.post("/api/flows/seen/run").json()["run_id"]
                runs.append(wait_until(lambda rid=run_id: finished(rid), 20, what="run done"))
            first, second = runs
            assert first["status"] == "succeeded", first
            assert second["status"] == "succeeded", second
            look = {n["id"]: n for n in second["nodes"]}["look"]["output"]
            assert look["value"] is True and look["cached"] is True and look["next_check_s"] == 30
            stored = [r for r in c.get("/api/results").json() if r.get("source") == "flow"]
            assert len(stored) == 2 and stored[0]["label"] == "ball"
            assert stored[0]["data"]["ask"]["provider"] == "fake"
        prompts = [r["json"]["messages"] for r in fake.requests]
        assert len(fake.requests) == 3  # 2 x ask, 1 x look: the watch waits next_check_s
        texts = [json.dumps(m) for m in prompts]
        assert sum("What happens on cam?" in t for t in texts) == 2
        assert sum("Is there a ball?" in t for t in texts) == 1
        ask = next(r for r in fake.requests if "What happens" in json.dumps(r["json"]))
        images = [
            p
            for m in ask["json"]["messages"]
            for p in (m["content"] if isinstance(m["content"], list) else [])
            if p.get("type") == "image_url"
        ]
        assert len(images) == 4  # the clip's frames
    finally:
        fake.close()


def test_config_flows_start_with_the_server_on_events(server) -> None:
    srv = server(
        {
            "streams": [
                {"id": "cam", "url": "synthetic://?fps=10&size=640x360", "analyzers": ["motion"]}
            ],
            "flows": [
                {
                    "id": "on-motion",
                    "stream": "cam",
                    "trigger": {
                        "kind": "event",
                        "event": "analysis",
                        "analyzer": "motion",
                        "when": "result.moving",
                    },
                    "nodes": [
                        {"id": "note", "type": "broadcast", "params": {"type": "demo.motion"}}
                    ],
                }
            ],
        }
    )
    with srv.client() as c:
        flow = c.get("/api/flows/on-motion").json()
        assert flow["state"] == "running" and flow["source"] == "config"
        runs = wait_until(lambda: c.get("/api/flows/on-motion/runs").json(), 20, what="a run")
        assert runs[0]["trigger"] == "analysis"
        assert c.delete("/api/flows/on-motion").status_code == 409  # owned by the config file


def test_a_bad_flow_in_the_config_stops_serve_with_the_node_named(tmp_path, python) -> None:
    import subprocess

    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"flows": [{"id": "x", "nodes": [{"id": "n1", "type": "nope"}]}]}))
    proc = subprocess.run(
        [python, "-m", "vlm_monitor", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "flows.x: node 'n1': unknown type 'nope'" in proc.stderr
