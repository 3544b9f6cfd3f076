"""Writes docs/configuration.md from the configuration models, so the reference cannot drift
from what the server accepts: ``python -m vlm_monitor.config_reference`` (``--check`` only
compares). Every key comes with its type, default, constraints and ``Field(description=...)``;
nested models become sections. tests/test_docs.py fails when the file is stale.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from vlm_monitor import config
from vlm_monitor.analyzers.params import DEFAULT_FPS, PARAMS
from vlm_monitor.flows.model import FlowDefinition

OUTPUT = Path("docs/configuration.md")
COMMAND = "python -m vlm_monitor.config_reference"

HEADER = f"""# Configuration reference

<!-- Generated from src/vlm_monitor/config/ by `{COMMAND}`; edit the models'
     descriptions there, not this file (tests/test_docs.py fails when it is stale). -->

One YAML or JSON file, given to `vlm-monitor serve --config FILE` (and `vlm-monitor worker
--config FILE`). Every key may be left out: the default applies. Unknown keys are refused, and
every error names the key and the value, e.g.
`streams.0.url: unsupported scheme 'htp' ... (got 'htp://x')`. JSON files may carry `//` and
`/* */` comments. How the pieces fit together: [concepts.md](concepts.md); worked examples:
[deployment.md](deployment.md) and [security.md](security.md).

```yaml
server: {{host: 127.0.0.1, port: 8080, api_token: null, data_dir: ./data}}
vlm:
  providers:
    - {{name: qwen, kind: openai, base_url: "http://HOST/v1", model: qwen-vl-max,
       api_key_env: DASHSCOPE_API_KEY}}
    - {{name: offline, kind: local}}
streams:
  - id: cam1
    url: tcp://127.0.0.1:8888
    analyzers: [motion, emotion, heart_rate]
    clips: {{clip_seconds: 10, frames_per_clip: 8, provider: qwen,
            prompt: "Describe anything unusual."}}
flows: []
```
"""

FOOTER = """
## The original system's `stream.tcp` form

The original deployment's config is accepted as it is:
`{"stream": {"type": "tcp", "tcp": {"host", "port", "id", "use_backend_client", "backend_url",
"frame_rate"}}}` becomes the stream `tcp://host:port` named `id` (without `id` the stream is
`camera`, and a warning says so) plus the `worker` section. `use_backend_client: false` is
refused: the backend keeps the camera's one connection and workers read frames from it.
"""

# Sections whose keys are free-form in Config (dict) but validated by another model.
FREE_FORM: dict[tuple[str, str], type[BaseModel]] = {
    ("flows", "Config"): FlowDefinition,
}


def render() -> str:
    """The whole reference, as the file should read."""
    out = [HEADER]
    seen: dict[type[BaseModel], str] = {}
    with _no_environment():
        out += _section("Top level", config.Config, 2, "", seen)
        out += _analyzer_params()
        out += _environment()
    out.append(FOOTER)
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


@contextmanager
def _no_environment() -> Iterator[None]:
    """Some defaults come from the environment (analysis.rtsp_base from MEDIAMTX_HOST): they
    are shown as with none set, so the file does not depend on who generated it."""
    saved = dict(os.environ)
    os.environ.clear()
    try:
        yield
    finally:
        os.environ.update(saved)


def _section(
    title: str, model: type[BaseModel], level: int, path: str, seen: dict[type[BaseModel], str]
) -> list[str]:
    seen[model] = path
    out = [f"{'#' * level} {title}", ""]
    doc = _doc(model)
    if doc:
        out += [doc, ""]
    out += ["| key | type | default | constraints | description |", "|---|---|---|---|---|"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        sub = FREE_FORM.get((key, model.__name__))
        models = [sub] if sub else _models_in(field.annotation)
        where = f"{path}.{key}" if path else key
        if models and _is_list(field.annotation):
            where += "[]"
        kind = _type(field.annotation, field.metadata)
        if sub:
            kind = "list of sections" if _is_list(field.annotation) else "section"
        for m in models:
            if m in seen:
                kind += f" (see [`{seen[m]}`](#{_anchor(seen[m])}))"
            else:
                nested.append((where, m))
                kind += f" (see [`{where}`](#{_anchor(where)}))"
        out.append(
            f"| `{key}` | {_cell(kind)} | {_cell(_default(field))} "
            f"| {_cell(_constraints(field))} | {_cell(field.description or '')} |"
        )
    out.append("")
    for where, m in nested:
        if m not in seen:
            out += _section(f"`{where}`", m, min(level + 1, 4), where, seen)
    return out


def _analyzer_params() -> list[str]:
    out = [
        "## Analyzer parameters",
        "",
        "`params` of an entry in `streams[].analyzers[]` (also `analysis.rtsp_default_analyzers`"
        " and `webrtc.auto_analyzers`); `GET /api/analyzers` serves the same as JSON schemas.",
        "",
    ]
    for name, model in PARAMS.items():
        title = f"`{name}` (default {_number(DEFAULT_FPS[name])} frames/s)"
        out += _section(title, model, 3, f"{name} params", {})
    return out


def _environment() -> list[str]:
    out = [
        "## Environment variables",
        "",
        "They override the file's value.",
        "",
        "| variable | key |",
        "|---|---|",
    ]
    for var, (key, _kind) in config.ENV_OVERRIDES.items():
        out.append(f"| `{var}` | `server.{key}` |")
    keys = sorted({env for _url, _model, env in config.REALTIME_DEFAULTS.values()})
    out += [
        "",
        "API keys are read from the variable a provider's `api_key_env` names (never from the "
        f"file): {', '.join(f'`{k}`' for k in keys)} by default. `MEDIAMTX_HOST` sets the "
        "default of `analysis.rtsp_base` to `rtsp://$MEDIAMTX_HOST:8554`.",
        "",
    ]
    return out


def _doc(model: type[BaseModel]) -> str:
    doc = model.__doc__ or ""
    if doc.startswith(("A base class for creating Pydantic models", "!!! abstract")):
        return ""  # BaseModel's own, inherited
    return " ".join(doc.split()).replace("``", "`")


def _strip(annotation: Any) -> Any:
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found += [m for m in _models_in(arg) if m not in found]
    return found


def _is_list(annotation: Any) -> bool:
    annotation = _strip(annotation)
    if get_origin(annotation) is list:
        return True
    return any(_is_list(a) for a in get_args(annotation) if get_origin(annotation) in _UNIONS)


_UNIONS = (Union, types.UnionType)
_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


# A size's check, as pydantic keeps it: in the field's metadata or inside Annotated.
_SIZE_CHECK = get_args(config.SizeText)[1]


def _type(annotation: Any, metadata: list[Any] | None = None) -> str:
    if annotation is config.SizeText or _SIZE_CHECK in (metadata or []):
        return "`WIDTHxHEIGHT`"
    annotation_ = _strip(annotation)
    origin, args = get_origin(annotation_), get_args(annotation_)
    if origin in _UNIONS:
        return " or ".join(_type(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        if _models_in(args[0]):
            return "list of sections"
        return f"list of {_type(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(_type(a) for a in args) + "]"
    if origin is dict or annotation_ is dict:
        return "mapping"
    if isinstance(annotation_, type) and issubclass(annotation_, BaseModel):
        return "section"
    if annotation_ is Any:
        return "any"
    return _NAMES.get(annotation_, getattr(annotation_, "__name__", str(annotation_)))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    factory: Callable[[], Any] | None = field.default_factory  # type: ignore[assignment]
    value = factory() if factory is not None else field.default
    return f"`{_value(value)}`"


def _value(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
        value = [v.model_dump(mode="json", exclude_defaults=True, by_alias=True) for v in value]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, dict) and len(value) > 4:
        return "{...}"  # a whole nested section: its own table shows it
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _constraints(field: FieldInfo) -> str:
    words = []
    for item in field.metadata:
        if isinstance(item, at.Ge):
            words.append(f">= {_number(item.ge)}")  # type: ignore[arg-type]
        elif isinstance(item, at.Gt):
            words.append(f"> {_number(item.gt)}")  # type: ignore[arg-type]
        elif isinstance(item, at.Le):
            words.append(f"<= {_number(item.le)}")  # type: ignore[arg-type]
        elif isinstance(item, at.Lt):
            words.append(f"< {_number(item.lt)}")  # type: ignore[arg-type]
        elif isinstance(item, at.MinLen):
            words.append(f"length >= {item.min_length}")
        elif isinstance(item, at.MaxLen):
            words.append(f"length <= {item.max_length}")
        elif getattr(item, "pattern", None):
            words.append(f"matches `{item.pattern}`")
    return ", ".join(words)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _anchor(path: str) -> str:
    """GitHub's heading anchor for a heading that is just `path` in backticks."""
    return re.sub(r"[^a-z0-9 _-]", "", path.lower()).replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("output", nargs="?", type=Path, default=OUTPUT, help="'-': stdout")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if str(args.output) == "-":
        sys.stdout.write(text)
        return 0
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(json.dumps({"wrote": str(args.output), "bytes": len(text.encode())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
