"""calls_per_minute shared through Redis by every node: two nodes spend one budget."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fake_vlm import FakeVlm
from vlm_monitor.config import VlmProviderConfig, build_config
from vlm_monitor.vlm.base import ProviderError, VlmRequest
from vlm_monitor.vlm.budget import SharedBudget
from vlm_monitor.vlm.registry import ProviderSet


@pytest.fixture
def fake():
    server = FakeVlm()
    yield server
    server.close()


def node(fake: FakeVlm, budget: SharedBudget | None) -> ProviderSet:
    cfg = VlmProviderConfig(
        name="qwen", kind="openai", base_url=fake.url + "/v1", model="m", calls_per_minute=3
    )
    ps = ProviderSet([cfg])
    if budget is not None:
        ps.share_budgets(budget.take)
    return ps


def ask(ps: ProviderSet) -> bool:
    try:
        ps.providers["qwen"].analyze(VlmRequest("cam", "?", [np.zeros((36, 64, 3), np.uint8)], [1]))
    except ProviderError as exc:
        assert "budget of 3 calls/min used" in str(exc)
        return False
    return True


def test_two_nodes_share_one_budget(fake: FakeVlm, redis_server) -> None:
    if time.time() % 60 > 50:  # the windows are calendar minutes: stay inside one
        time.sleep(61 - time.time() % 60)
    a = node(fake, SharedBudget.from_url(redis_server.url, "t"))
    b = node(fake, SharedBudget.from_url(redis_server.url, "t"))
    admitted = [ask(a), ask(b), ask(a), ask(b), ask(a), ask(b)]
    assert admitted == [True, True, True, False, False, False]
    assert len(fake.requests) == 3
    assert a.providers["qwen"].stats.rejected_budget == 1

    other = node(fake, SharedBudget.from_url(redis_server.url, "other-channel"))
    assert ask(other)  # another deployment on the same Redis has its own budget


def test_without_redis_each_node_counts_on_its_own(fake: FakeVlm, redis_server) -> None:
    redis_server.stop()
    a = node(fake, SharedBudget.from_url(redis_server.url, "t"))
    assert [ask(a) for _ in range(4)] == [True, True, True, False]


def test_shared_budgets_setting() -> None:
    assert not build_config({}).vlm.shared_budgets
    assert build_config({"vlm": {"shared_budgets": True}}).vlm.shared_budgets
