"""Flows get what they use as narrow ports (flows/ports.py), never the whole server: nothing
under flows/ imports the composition root or the HTTP layer, and no import cycle runs through
flows. Read from the source with ast, so imports under TYPE_CHECKING count too."""

from __future__ import annotations

import ast
from pathlib import Path

import vlm_monitor

PACKAGE = Path(vlm_monitor.__file__).parent
ABOVE_FLOWS = ("vlm_monitor.services", "vlm_monitor.app", "vlm_monitor.api", "vlm_monitor.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """The vlm_monitor modules ``path`` imports, each as the module (not the name) it reads."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name in MODULES}


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def is_flows(name: str) -> bool:
    return name == "vlm_monitor.flows" or name.startswith("vlm_monitor.flows.")


def test_flows_import_nothing_above_them() -> None:
    flows = [name for name in MODULES if is_flows(name)]
    assert "vlm_monitor.flows.ports" in flows
    offending = {
        f"{name} imports {imported}"
        for name in flows
        for imported in GRAPH[name]
        if imported.startswith(ABOVE_FLOWS)
    }
    assert not offending, sorted(offending)


def test_no_import_cycle_runs_through_flows() -> None:
    for name in (n for n in MODULES if is_flows(n)):
        for outside in (m for m in reachable(name) if not is_flows(m)):
            back = sorted(m for m in reachable(outside) if is_flows(m))
            assert not back, f"{name} -> {outside} -> {back[0]}: a cycle through flows"


def test_the_checker_sees_imports() -> None:
    # The composition root builds the flow manager: the checker must see that edge.
    assert "vlm_monitor.flows.manager" in GRAPH["vlm_monitor.services"]
    assert "vlm_monitor.flows.ports" in GRAPH["vlm_monitor.flows.nodes.base"]
