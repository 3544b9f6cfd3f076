"""The cost governor: calls, tokens and cost budgets, shared through Redis by every node,
against the fake OpenAI-protocol server (each answer reports 100 prompt and 20 completion
tokens)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fake_vlm import FakeVlm
from vlm_monitor.config import BudgetConfig, VlmProviderConfig, build_config
from vlm_monitor.testing import wait_until
from vlm_monitor.vlm.base import BudgetSpent, VlmRequest
from vlm_monitor.vlm.budget import SharedLedger
from vlm_monitor.vlm.registry import ProviderSet

# 100 prompt tokens at 1.0 per 1k + 20 completion tokens at 2.0 per 1k: 0.14 a call.
PRICED = {"price_input_per_1k": 1.0, "price_output_per_1k": 2.0}


@pytest.fixture
def fake():
    server = FakeVlm()
    yield server
    server.close()


def inside_windows() -> None:
    """The windows are calendar minutes, hours and days: a test stays inside one."""
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


def node(
    fake: FakeVlm,
    ledger: SharedLedger | None,
    budget: BudgetConfig | None = None,
    **provider: object,
) -> ProviderSet:
    cfg = VlmProviderConfig(
        name="qwen", kind="openai", base_url=fake.url + "/v1", model="m", retries=0, **provider
    )
    ps = ProviderSet([cfg], budget)
    if ledger is not None:
        ps.share_budgets(ledger)
    return ps


def ask(ps: ProviderSet, stream: str = "cam", budget: BudgetConfig | None = None) -> str:
    """ "ok", or the budget that refused the call."""
    request = VlmRequest(stream, "?", [np.zeros((36, 64, 3), np.uint8)], [1])
    request.budget = budget or BudgetConfig()
    try:
        ps.providers["qwen"].analyze(request)
    except BudgetSpent as exc:
        return str(exc)
    return "ok"


def test_two_nodes_share_one_calls_budget(fake: FakeVlm, redis_server) -> None:
    inside_windows()
    a = node(fake, SharedLedger.from_url(redis_server.url, "t"), calls_per_minute=3)
    b = node(fake, SharedLedger.from_url(redis_server.url, "t"), calls_per_minute=3)
    admitted = [ask(a), ask(b), ask(a), ask(b), ask(a), ask(b)]
    assert admitted[:3] == ["ok"] * 3
    assert admitted[3:] == ["qwen: budget of 3 calls/min used"] * 3
    assert len(fake.requests) == 3
    assert a.providers["qwen"].stats.rejected_budget == 1

    other = node(fake, SharedLedger.from_url(redis_server.url, "other-channel"))
    assert ask(other) == "ok"  # another deployment on the same Redis has its own budget


def test_two_nodes_share_tokens_and_cost_budgets(fake: FakeVlm, redis_server) -> None:
    inside_windows()
    tokens = BudgetConfig(tokens_per_hour=250)
    a = node(fake, SharedLedger.from_url(redis_server.url, "t"), tokens)
    b = node(fake, SharedLedger.from_url(redis_server.url, "t"), tokens)
    # 120 tokens a call: 0, 120 and 240 are under 250; after the third, 360 are spent.
    assert [ask(a), ask(b), ask(a)] == ["ok"] * 3
    refused = ask(b)
    assert refused == "all VLM calls (vlm.budget): budget of 250 tokens/hour used"
    assert len(fake.requests) == 3
    spend = b.status(spend=True)["qwen"]["spend"]
    assert spend["tokens_this_hour"] == 360 and spend["calls_today"] == 3
    assert spend["prompt_tokens_today"] == 300 and spend["completion_tokens_today"] == 60

    cost = BudgetConfig(cost_per_day=0.25)
    c = node(fake, SharedLedger.from_url(redis_server.url, "cost"), cost, **PRICED)
    d = node(fake, SharedLedger.from_url(redis_server.url, "cost"), cost, **PRICED)
    assert [ask(c), ask(d)] == ["ok", "ok"]  # 0.14, then 0.28: spent
    assert ask(c) == "all VLM calls (vlm.budget): budget of 0.25 cost/day used"
    assert d.status(spend=True)["qwen"]["spend"]["cost_today"] == pytest.approx(0.28)
    assert c.providers["qwen"].stats.cost == pytest.approx(0.14)
    assert c.budget_status()["spend"]["cost_today"] == pytest.approx(0.28)


def test_a_stream_budget_stops_that_stream_only(fake: FakeVlm, redis_server) -> None:
    inside_windows()
    a = node(fake, SharedLedger.from_url(redis_server.url, "t"), **PRICED)
    b = node(fake, SharedLedger.from_url(redis_server.url, "t"), **PRICED)
    cheap = BudgetConfig(cost_per_day=0.1)
    assert ask(a, "cam1", cheap) == "ok"
    assert ask(b, "cam1", cheap) == "stream cam1 (clips.budget): budget of 0.1 cost/day used"
    assert ask(b, "cam2", cheap) == "ok"  # each stream has its own
    assert a.governor.spend("stream:cam1")["cost_today"] == pytest.approx(0.14)


def test_without_redis_each_node_counts_on_its_own(fake: FakeVlm, redis_server) -> None:
    inside_windows()
    redis_server.stop()
    a = node(fake, SharedLedger.from_url(redis_server.url, "t"), calls_per_minute=3)
    assert [ask(a) for _ in range(4)][3] == "qwen: budget of 3 calls/min used"
    local = node(fake, None, BudgetConfig(tokens_per_hour=100))
    assert ask(local) == "ok"  # 120 tokens: the next call is refused
    assert ask(local) == "all VLM calls (vlm.budget): budget of 100 tokens/hour used"


def test_budget_settings() -> None:
    assert build_config({}).vlm.shared_budgets  # with bus.kind redis
    assert not build_config({"vlm": {"shared_budgets": False}}).vlm.shared_budgets
    doc = {"vlm": {"budget": {"tokens_per_hour": 1000, "cost_per_day": 2.5}}}
    assert build_config(doc).vlm.budget.cost_per_day == 2.5
    with pytest.raises(ValueError, match="cost_per_day"):
        build_config({"vlm": {"budget": {"cost_per_day": -1}}})


def test_a_server_skips_clips_when_another_node_spent_the_budget(
    fake: FakeVlm, redis_server, server
) -> None:
    """A second node (here in the test) spends the shared budget: the server's clips are
    skipped with reason budget, counted, and the spend shows in its API and metrics."""
    inside_windows()
    provider = {"name": "qwen", "kind": "openai", "base_url": fake.url + "/v1", "model": "m",
                **PRICED}  # fmt: skip
    srv = server(
        {
            "bus": {"kind": "redis", "url": redis_server.url, "channel": "farm"},
            "vlm": {"providers": [provider], "budget": {"cost_per_day": 0.3}},
            "streams": [
                {"id": "cam", "url": "synthetic://?fps=10&size=320x180",
                 "clips": {"clip_seconds": 1, "frames_per_clip": 2, "min_free_mb": 0}}
            ],
        }
    )  # fmt: skip
    same = BudgetConfig(cost_per_day=0.3)  # every node has the same configuration
    other = node(fake, SharedLedger.from_url(redis_server.url, "farm"), same, **PRICED)
    with srv.client() as c:
        wait_until(lambda: c.get("/api/providers").json()["qwen"]["calls"] >= 1, 30, what="a call")
        while ask(other) == "ok":  # the other node spends what is left
            pass

        def skipped() -> int:
            return c.get("/api/budgets").json()["streams"]["cam"]["skipped"]["budget"]

        wait_until(lambda: skipped() >= 2, 20, what="clips skipped for the budget")
        budgets = c.get("/api/budgets").json()
        assert budgets["shared"] and budgets["limits"]["cost_per_day"] == 0.3
        assert budgets["spend"]["cost_today"] >= 0.3
        reason = budgets["streams"]["cam"]["budget_skip_reason"]
        assert reason == "all VLM calls (vlm.budget): budget of 0.3 cost/day used"
        qwen = c.get("/api/providers").json()["qwen"]
        assert qwen["spend"]["cost_today"] >= 0.3  # both nodes' calls
        assert qwen["cost"] == pytest.approx(0.14 * qwen["calls"])  # this node's own
        assert qwen["savings"]["clips_skipped"]["budget"] >= 2
        assert qwen["savings"]["cost_est"] >= 0.28 and qwen["savings"]["tokens_est"] >= 240
        assert qwen["circuit"] == "closed"
        status = c.get("/api/streams/cam").json()["clips"]
        assert status["skipped"]["budget"] >= 2 and status["budget_skip_reason"] == reason
        metrics = c.get("/metrics").text
        assert 'vlm_clips_skipped_total{reason="budget",stream="cam"}' in metrics
        assert 'vlm_provider_tokens_total{kind="completion",provider="qwen"}' in metrics
        assert 'vlm_provider_circuit_state{provider="qwen",state="closed"} 1.0' in metrics
        asked = c.post("/api/streams/cam/ask", json={"question": "Anyone there?"})
        assert asked.status_code == 429 and "budget of 0.3 cost/day used" in asked.text
        calls_before = len(fake.requests)
        time.sleep(1.5)  # clips keep coming; none is sent while the budget is spent
        assert len(fake.requests) == calls_before


def test_a_worker_refused_by_a_stream_budget_skips_the_clip(
    fake: FakeVlm, redis_server, server, job_worker
) -> None:
    """clips.dispatch redis: the stream's budget travels with the job; the worker's refusal
    comes back as a budget skip, not as a failed clip."""
    inside_windows()
    provider = {"name": "qwen", "kind": "openai", "base_url": fake.url + "/v1", "model": "m"}
    srv = server(
        {
            "bus": {"kind": "redis", "url": redis_server.url},
            "vlm": {"providers": [provider]},
            "streams": [
                {"id": "cam", "url": "synthetic://?fps=5&size=320x180",
                 "clips": {"clip_seconds": 1, "frames_per_clip": 2, "input_fps": 3,
                           "dispatch": "redis", "min_free_mb": 0,
                           "budget": {"calls_per_minute": 1}}}
            ],
        }
    )  # fmt: skip
    job_worker("w1", config={"vlm": {"providers": [provider]}})
    with srv.client() as c:

        def clips() -> dict:
            return c.get("/api/streams/cam").json()["clips"]

        wait_until(lambda: clips()["skipped"]["budget"] >= 2, 40, what="budget skips")
        status = clips()
        assert (
            "stream cam (clips.budget): budget of 1 calls/min used" in status["budget_skip_reason"]
        )
        assert status["inference_errors"] == 0 and len(fake.requests) == 1
