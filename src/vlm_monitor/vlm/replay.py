"""``vlm-monitor replay --config FILE``: the questions the audit log recorded (in the
configuration's ``data_dir/audit``) put again to another provider, prompt or schema, and the
answers compared with the recorded ones. For trying a new model or prompt on real past clips
before switching a camera to it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vlm_monitor.vlm.registry import ProviderSet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "audit",
        nargs="?",
        help="an audit file or directory (default: the configuration's data_dir/audit)",
    )
    parser.add_argument("--config", required=True, help="providers and data_dir come from it")
    parser.add_argument("--stream", help="only the calls of this stream")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--since", help="only calls from this time on (ISO 8601; UTC if no zone)")
    when.add_argument("--last", type=int, help="only the N most recent calls")
    parser.add_argument("--limit", type=int, help="at most N calls, the oldest first")
    parser.add_argument("--provider", help="ask this provider (default: the recorded one)")
    parser.add_argument("--prompt", help="ask with this prompt instead of the recorded one")
    parser.add_argument(
        "--schema",
        help="a built-in schema by name (review) or a JSON Schema file; default: the recorded one",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


class ReplayError(Exception):
    """Bad arguments or an unusable audit log: the message says which."""


def command(args: argparse.Namespace) -> int:
    """Prints the comparison; exit 1 when a replayed call failed, 2 on bad arguments."""
    # Imported here: `vlm-monitor --help` and the other commands need none of it.
    from vlm_monitor.config import ConfigError, load_config
    from vlm_monitor.vlm.registry import ProviderSet
    from vlm_monitor.vlm.replay_compare import render, summarize

    try:
        config = load_config(args.config)
        source = Path(args.audit) if args.audit else Path(config.server.data_dir) / "audit"
        schema = _schema(args.schema)
        docs = select(read_records(source), args.stream, _since(args.since), args.last)
        if args.limit is not None:
            docs = docs[: args.limit]
        if args.provider and args.provider not in {p.name for p in config.vlm.providers}:
            raise ReplayError(f"no provider {args.provider!r} in {args.config}")
    except (ReplayError, ConfigError, OSError) as exc:
        print(f"vlm-monitor replay: {exc}", file=sys.stderr)
        return 2
    directory = source if source.is_dir() else source.parent
    providers = ProviderSet(config.vlm.providers)
    try:
        rows = [_replay(directory, doc, providers, args, schema) for doc in docs]
    finally:
        providers.close()
    report = summarize(rows)
    report["run"] = {
        "audit": str(source),
        "stream": args.stream,
        "provider": args.provider or "as recorded",
        "recorded_providers": sorted({d["provider"] for d in docs}),
        "prompt": args.prompt,
        "schema": args.schema,
    }
    print(json.dumps(report) if args.json else render(report), flush=True)
    return 1 if report["replayed"]["failed"] else 0


def read_records(source: Path) -> list[dict[str, Any]]:
    """Every record of an audit file, or of a directory's ``audit-*.jsonl`` files, in time
    order. A line that is not a record (a write cut short) is left out."""
    if source.is_dir():
        files = sorted(source.glob("audit-*.jsonl"))
    elif source.is_file():
        files = [source]
    else:
        raise ReplayError(f"no audit log at {source} (is vlm.audit.enabled?)")
    docs = []
    for path in files:
        for line in path.read_text().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and {"id", "ts", "stream", "frames"} <= doc.keys():
                docs.append(doc)
    return sorted(docs, key=lambda d: d["ts"])


def select(
    docs: list[dict[str, Any]], stream: str | None, since: float | None, last: int | None
) -> list[dict[str, Any]]:
    chosen = [
        d
        for d in docs
        if d["frames"]
        and (stream is None or d["stream"] == stream)
        and (since is None or d["ts"] >= since)
    ]
    return chosen[-last:] if last is not None else chosen


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayError(f"--since {text!r} is not an ISO 8601 time") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _schema(value: str | None) -> dict[str, Any] | None:
    from vlm_monitor.vlm.schemas import BUILTIN_SCHEMAS, check_schema, resolve_schema

    if value is None:
        return None
    if value in BUILTIN_SCHEMAS:
        return resolve_schema(value)
    try:
        doc = json.loads(Path(value).read_text())
        check_schema(doc)
    except FileNotFoundError:
        raise ReplayError(
            f"--schema {value!r} is neither a built-in ({', '.join(BUILTIN_SCHEMAS)}) nor a file"
        ) from None
    except ValueError as exc:
        raise ReplayError(f"--schema {value}: {exc}") from None
    if not isinstance(doc, dict):
        raise ReplayError(f"--schema {value}: a JSON Schema is an object")
    return doc


def _replay(
    directory: Path,
    doc: dict[str, Any],
    providers: ProviderSet,
    args: argparse.Namespace,
    schema: dict[str, Any] | None,
) -> dict[str, Any]:
    from vlm_monitor.vlm.audit import load_request
    from vlm_monitor.vlm.base import ProviderError, StructuredAnswerError
    from vlm_monitor.vlm.replay_compare import compare

    recorded = {
        "provider": doc.get("provider"),
        "answer": doc.get("answer"),
        "structured": doc.get("structured"),
        "error": doc.get("error"),
        "latency_s": doc.get("latency_s"),
        "tokens": doc.get("tokens", 0),
        "cost": doc.get("cost"),
    }
    name = args.provider or doc["provider"]
    replayed: dict[str, Any] = {
        "provider": name,
        "answer": None,
        "structured": None,
        "error": None,
        "latency_s": None,
        "tokens": 0,
        "cost": 0.0,
    }
    started = time.monotonic()
    try:
        provider = providers.providers.get(name)
        if provider is None:
            raise ProviderError(f"no provider {name!r} in the configuration")
        request = load_request(directory, doc)
        request.prompt = args.prompt if args.prompt is not None else request.prompt
        request.schema = schema if schema is not None else request.schema
        answer = provider.analyze(request)
    except (ProviderError, ValueError) as exc:
        replayed["error"] = str(exc)
        if isinstance(exc, StructuredAnswerError):
            replayed["answer"] = exc.answer.text
    else:
        replayed.update(
            answer=answer.text,
            structured=answer.structured,
            tokens=answer.tokens,
            cost=round(answer.cost, 6),
        )
    replayed["latency_s"] = round(time.monotonic() - started, 3)
    return {
        "id": doc["id"],
        "stream": doc["stream"],
        "ts": doc["ts"],
        **compare(recorded, replayed),
    }
