"""The provider circuit breaker: half-open probing, and only the provider's own failures
count (5xx, 408, 429, timeouts, connection errors), not a request one stream got wrong."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from fake_vlm import FakeVlm
from vlm_monitor.config import VlmProviderConfig
from vlm_monitor.vlm.base import ProviderError, VlmRequest
from vlm_monitor.vlm.registry import ProviderSet, build_provider


@pytest.fixture
def fake():
    server = FakeVlm()
    yield server
    server.close()


def request() -> VlmRequest:
    return VlmRequest("cam", "?", [np.zeros((90, 160, 3), np.uint8)], [1.0])


def provider(base_url: str, **kw):
    cfg = VlmProviderConfig(name="p", kind="openai", base_url=base_url, model="m", **kw)
    return build_provider(cfg)


def test_half_open_probe_closes_on_success_and_reopens_on_failure(fake: FakeVlm) -> None:
    p = provider(fake.url + "/v1", retries=0, breaker_failures=2, breaker_reset_s=0.3)
    fake.behaviours.extend(["500", "500"])
    for _ in range(2):
        with pytest.raises(ProviderError, match="HTTP 500"):
            p.analyze(request())
    assert p.breaker_state == "open"
    with pytest.raises(ProviderError, match="circuit open"):
        p.analyze(request())
    assert len(fake.requests) == 2  # open: nothing sent

    time.sleep(0.35)
    assert p.breaker_state == "half_open"
    fake.behaviours.append("500")  # the probe fails: open again, for another reset period
    with pytest.raises(ProviderError, match="HTTP 500"):
        p.analyze(request())
    assert p.breaker_state == "open" and len(fake.requests) == 3
    with pytest.raises(ProviderError, match="circuit open"):
        p.analyze(request())

    time.sleep(0.35)
    p.analyze(request())  # the probe succeeds: closed
    assert p.breaker_state == "closed"
    p.analyze(request())
    assert len(fake.requests) == 5
    status = ProviderSet.__new__(ProviderSet)
    status.providers = {"p": p}
    assert status.status()["p"]["circuit"] == "closed"


def test_half_open_lets_exactly_one_probe_through(fake: FakeVlm) -> None:
    p = provider(fake.url + "/v1", retries=0, breaker_failures=1, breaker_reset_s=0.2)
    fake.behaviours.append("500")
    with pytest.raises(ProviderError):
        p.analyze(request())
    time.sleep(0.25)
    fake.behaviours.append(("slow", 0.5))
    probe = threading.Thread(target=p.analyze, args=(request(),))
    probe.start()
    time.sleep(0.1)
    with pytest.raises(ProviderError, match="probe call is in flight"):
        p.analyze(request())
    probe.join()
    assert p.breaker_state == "closed" and len(fake.requests) == 2


def test_a_bad_request_does_not_open_the_breaker(fake: FakeVlm) -> None:
    p = provider(fake.url + "/v1", retries=2, breaker_failures=2, breaker_reset_s=60)
    for code in (400, 400, 401, 404, 413, 422, 400):
        fake.behaviours.append(("status", code))
        with pytest.raises(ProviderError, match=f"HTTP {code}"):
            p.analyze(request())
    assert len(fake.requests) == 7  # not retried: the same request gets the same answer
    assert p.breaker_state == "closed" and p.stats.failures == 7
    p.analyze(request())  # other streams' calls still go

    fake.behaviours.extend([("status", 408)] * 2)  # 408 is the provider's: retried, counted
    with pytest.raises(ProviderError, match="circuit open"):  # the 2nd opened it mid-retry
        p.analyze(request())
    assert p.breaker_state == "open" and len(fake.requests) == 10


def test_connection_errors_and_timeouts_open_the_breaker(fake: FakeVlm) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    p = provider(f"http://127.0.0.1:{port}/v1", retries=0, breaker_failures=2)
    for _ in range(2):
        with pytest.raises(ProviderError, match="ConnectError"):
            p.analyze(request())
    assert p.breaker_state == "open"

    slow = provider(fake.url + "/v1", retries=0, breaker_failures=1, timeout_s=0.2)
    fake.behaviours.append(("slow", 0.5))
    with pytest.raises(ProviderError, match="timed out"):
        slow.analyze(request())
    assert slow.breaker_state == "open"
