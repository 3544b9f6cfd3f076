"""From a definition to a runnable graph, with every problem named: unknown types, bad
params, unknown or duplicate nodes, cycles, input counts and type mismatches."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from pydantic import ValidationError

from vlm_monitor.flows.model import FlowDefinition
from vlm_monitor.flows.nodes import NODE_TYPES
from vlm_monitor.flows.nodes.base import NodeType
from vlm_monitor.types import InvalidError


class FlowValidationError(InvalidError, ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors), errors)
        self.errors = errors


@dataclass
class Graph:
    flow: FlowDefinition
    nodes: dict[str, NodeType]  # in topological order
    preds: dict[str, list[str]]
    succs: dict[str, list[str]]


def _pydantic_messages(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        out.append(f"params.{where}: {err['msg'].removeprefix('Value error, ')}")
    return out


def _topological(
    ids: list[str], preds: dict[str, list[str]], succs: dict[str, list[str]]
) -> list[str] | list[str]:
    indegree = {n: len(preds[n]) for n in ids}
    order = [n for n in ids if indegree[n] == 0]
    i = 0
    while i < len(order):
        for s in succs[order[i]]:
            indegree[s] -= 1
            if indegree[s] == 0:
                order.append(s)
        i += 1
    return order


def _find_cycle(ids: list[str], succs: dict[str, list[str]]) -> list[str]:
    colour = dict.fromkeys(ids, 0)  # 0 new, 1 on the path, 2 done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        colour[n] = 1
        path.append(n)
        for s in succs[n]:
            if colour[s] == 1:
                return [*path[path.index(s) :], s]
            if colour[s] == 0 and (found := visit(s)):
                return found
        path.pop()
        colour[n] = 2
        return None

    for n in ids:
        if colour[n] == 0 and (found := visit(n)):
            return found
    return []


def _check_inputs(node: NodeType, inputs: list[str], nodes: dict[str, NodeType]) -> list[str]:
    kind = type(node)
    name, n = kind.type_name, len(inputs)
    out = []
    if n < kind.min_inputs:
        out.append(f"{name} needs at least {kind.min_inputs} input(s), has {n}")
    if kind.max_inputs is not None and n > kind.max_inputs:
        out.append(
            f"{name} takes at most {kind.max_inputs} input(s), has {n} ({', '.join(inputs)})"
        )
    if kind.accepts is not None:
        wanted = "/".join(sorted(kind.accepts))
        for src in inputs:
            got = type(nodes[src]).output
            if got not in kind.accepts:
                out.append(f"input from {src!r} is {got}, {name} accepts {wanted}")
    if kind.needs_stream and not node.stream:
        out.append(f"{name} needs a stream (params.stream or the flow's stream)")
    return out + node.check(inputs)


def build_graph(flow: FlowDefinition) -> Graph:
    """Raises FlowValidationError listing every problem, each naming its node."""
    errors: list[str] = []
    nodes: dict[str, NodeType] = {}
    seen: set[str] = set()
    for spec in flow.nodes:
        if spec.id in seen:
            errors.append(f"node {spec.id!r}: duplicate id")
            continue
        seen.add(spec.id)
        if spec.type not in NODE_TYPES:
            known = ", ".join(NODE_TYPES.names())
            errors.append(f"node {spec.id!r}: unknown type {spec.type!r} (known: {known})")
            continue
        cls = NODE_TYPES.get(spec.type)
        try:
            params = cls.ParamsModel.model_validate(spec.params)
        except ValidationError as exc:
            errors += [f"node {spec.id!r}: {m}" for m in _pydantic_messages(exc)]
            continue
        nodes[spec.id] = cls(spec, params, flow)
    ids = [s.id for s in flow.nodes if s.id in nodes]
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    for a, b in flow.edges:
        for end in (a, b):
            if end not in seen:
                errors.append(f"edge {a} -> {b}: unknown node {end!r}")
        if a == b:
            errors.append(f"node {a!r}: edge to itself")
        elif a in nodes and b in nodes and a not in preds[b]:
            preds[b].append(a)
            succs[a].append(b)
    order = _topological(ids, preds, succs)
    if len(order) < len(ids):
        cycle = _find_cycle(ids, succs)
        errors.append(f"node {cycle[0]!r}: cycle {' -> '.join(cycle)}")
    for nid, node in nodes.items():
        errors += [f"node {nid!r}: {m}" for m in _check_inputs(node, preds[nid], nodes)]
    if errors:
        raise FlowValidationError(errors)
    return Graph(flow, {n: nodes[n] for n in order}, dict(preds), dict(succs))
