"""Domain errors map to HTTP statuses in one place (app.py): each kind is one status, the
message is the body's ``error``, and routers let them through untranslated."""

from __future__ import annotations

import json

import pytest

from vlm_monitor.app import DOMAIN_STATUS, domain_error_response
from vlm_monitor.flows.graph import FlowValidationError
from vlm_monitor.flows.manager import FlowExistsError, FlowNotFoundError, FlowRunningError
from vlm_monitor.sources.manager import StreamExistsError, StreamNotFoundError
from vlm_monitor.types import (
    CapacityError,
    ConflictError,
    DomainError,
    InvalidError,
    LimitError,
    NotFoundError,
)

SYN = "synthetic://?fps=5&size=320x240"


def answer(exc: DomainError) -> tuple[int, dict[str, object]]:
    response = domain_error_response(exc)
    return response.status_code, json.loads(bytes(response.body))


@pytest.mark.parametrize(
    ("exc", "status", "error"),
    [
        (StreamNotFoundError("cam"), 404, "unknown stream 'cam'"),
        (FlowNotFoundError("f1"), 404, "unknown flow 'f1'"),
        (StreamExistsError("cam"), 409, "stream 'cam' already exists"),
        (FlowExistsError("f1"), 409, "flow 'f1' already exists (PUT replaces)"),
        (FlowRunningError("flow 'f1' comes from the config file"), 409, "flow 'f1' comes"),
        (InvalidError("url: no host"), 422, "url: no host"),
        (LimitError("at most 2 streams (server.max_streams)"), 429, "at most 2 streams"),
    ],
)
def test_each_kind_is_one_status_with_its_message(
    exc: DomainError, status: int, error: str
) -> None:
    code, body = answer(exc)
    assert code == status and str(body["error"]).startswith(error)
    assert "detail" not in body


def test_not_found_errors_are_still_key_errors_with_a_plain_message() -> None:
    exc = StreamNotFoundError("cam")
    assert isinstance(exc, KeyError) and isinstance(exc, NotFoundError)
    assert str(exc) == "unknown stream 'cam'"  # not KeyError's repr, "\"unknown ...\""


def test_every_problem_of_an_invalid_request_is_listed() -> None:
    code, body = answer(FlowValidationError(["node 'a': unknown type 'x'", "edge a -> b: no b"]))
    assert code == 422
    assert body == {
        "error": "node 'a': unknown type 'x'; edge a -> b: no b",
        "detail": ["node 'a': unknown type 'x'", "edge a -> b: no b"],
    }


def test_the_map_covers_the_kinds() -> None:
    assert set(DOMAIN_STATUS) == {
        NotFoundError, ConflictError, InvalidError, LimitError, CapacityError
    }  # fmt: skip
    assert answer(CapacityError("at capacity")) == (503, {"error": "at capacity"})
    assert answer(DomainError("something else"))[0] == 400


def test_routers_answer_domain_errors(server) -> None:
    srv = server({"server": {"max_streams": 1}, "streams": [{"id": "cam", "url": SYN}]})
    with srv.client() as c:
        r = c.put("/api/streams/nope/analyzers", json={"analyzers": ["motion"]})
        assert r.status_code == 404 and r.json() == {"error": "unknown stream 'nope'"}
        r = c.post("/api/streams", json={"id": "cam", "url": SYN})
        assert r.status_code == 409 and r.json() == {"error": "stream 'cam' already exists"}
        r = c.post("/api/streams", json={"id": "two", "url": SYN})
        assert r.status_code == 429 and "server.max_streams" in r.json()["error"]
        r = c.post("/api/streams", json={"id": "two", "url": "file:///etc/passwd"})
        assert r.status_code == 422 and "server.media_dir" in r.json()["error"]
        flow = {"id": "f1", "nodes": [{"id": "a", "type": "wait", "params": {"seconds": 0}}]}
        assert c.post("/api/flows", json=flow).status_code == 201
        r = c.post("/api/flows", json=flow)
        assert (
            r.status_code == 409 and r.json()["error"] == "flow 'f1' already exists (PUT replaces)"
        )
        r = c.post("/api/flows/nope/start")
        assert r.status_code == 404 and r.json() == {"error": "unknown flow 'nope'"}
        r = c.put("/api/flows/f1", json={"nodes": [{"id": "a", "type": "teleport"}]})
        assert r.status_code == 422 and r.json()["detail"][0].startswith("node 'a': unknown type")
        r = c.get("/internal/video/latest-frame", params={"stream": "nope"})
        assert r.status_code == 404 and r.json() == {"error": "unknown stream 'nope'"}
