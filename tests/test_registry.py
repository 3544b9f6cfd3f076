"""One registry type for every kind of plug-in: names, unknown names, and the built-ins of each
kind agreeing with the names the configuration and the API accept."""

from __future__ import annotations

from typing import get_args

import pytest

from vlm_monitor.analyzers.builtin import ANALYZERS
from vlm_monitor.analyzers.params import DEFAULT_FPS, PARAMS, AnalyzerName
from vlm_monitor.config import RealtimeProviderConfig, VlmProviderConfig
from vlm_monitor.flows.nodes import NODE_TYPES
from vlm_monitor.realtime.providers import REALTIME_KINDS
from vlm_monitor.registry import Registry, UnknownNameError
from vlm_monitor.vlm.base import PROVIDER_KINDS
from vlm_monitor.vlm.registry import build_provider


def test_register_get_and_names() -> None:
    shapes: Registry[type] = Registry("shape")

    @shapes.register("square")
    class Square:
        pass

    @shapes.register("circle")
    class Circle:
        pass

    assert shapes.get("square") is Square and shapes["circle"] is Circle
    assert shapes.names() == ["circle", "square"]
    assert "square" in shapes and "hexagon" not in shapes
    assert list(shapes) == ["square", "circle"]  # registration order
    assert len(shapes) == 2


def test_unknown_name_lists_the_known_ones() -> None:
    shapes: Registry[int] = Registry("shape")
    shapes.register("square")(4)
    shapes.register("triangle")(3)
    with pytest.raises(
        UnknownNameError, match=r"unknown shape 'hexagon' \(known: square, triangle\)"
    ):
        shapes.get("hexagon")
    with pytest.raises(LookupError):
        shapes["hexagon"]
    with pytest.raises(UnknownNameError, match=r"\(known: none\)"):
        Registry[int]("colour").get("red")


def test_a_name_is_registered_once() -> None:
    shapes: Registry[int] = Registry("shape")
    shapes.register("square")(4)
    with pytest.raises(ValueError, match="shape 'square' is registered twice"):
        shapes.register("square")(5)
    assert shapes.get("square") == 4


def test_unknown_builtin_plugins_are_named_with_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown VLM provider kind 'gpt9'.*local"):
        PROVIDER_KINDS.get("gpt9")
    with pytest.raises(UnknownNameError, match=r"unknown analyzer 'faces'.*heart_rate"):
        ANALYZERS.get("faces")
    with pytest.raises(UnknownNameError, match=r"unknown flow node type 'teleport'.*webhook"):
        NODE_TYPES.get("teleport")
    with pytest.raises(UnknownNameError, match=r"unknown realtime provider kind 'x'.*dashscope"):
        REALTIME_KINDS.get("x")


def test_builtins_agree_with_the_names_config_and_api_accept() -> None:
    analyzers = set(get_args(AnalyzerName))
    assert set(PARAMS.names()) == set(ANALYZERS.names()) == set(DEFAULT_FPS) == analyzers
    assert all(cls.name == name for name, cls in ANALYZERS.items())
    assert all(cls.type_name == name for name, cls in NODE_TYPES.items())
    vlm_kinds = get_args(VlmProviderConfig.model_fields["kind"].annotation)
    assert set(PROVIDER_KINDS.names()) == set(vlm_kinds)
    realtime_kinds = get_args(RealtimeProviderConfig.model_fields["kind"].annotation)
    assert set(REALTIME_KINDS.names()) == set(realtime_kinds)
    assert all(cls.name == kind for kind, cls in REALTIME_KINDS.items())


def test_provider_built_by_kind() -> None:
    provider = build_provider(VlmProviderConfig(name="offline", kind="local"))
    try:
        assert provider.name == "offline"
    finally:
        provider.close()
