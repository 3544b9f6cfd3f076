"""``vlm-monitor replay AUDIT.jsonl``: the recorded questions put again, to the provider that
answered them or another (``--provider``), and what changed. For trying a new model or
prompt on real past questions before switching a camera to it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vlm_monitor.vlm.registry import ProviderSet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audit", help="an audit file: data_dir/audit/audit-YYYYMMDD.jsonl")
    parser.add_argument("--config", help="the providers come from this configuration file")
    parser.add_argument("--provider", help="ask this provider instead of the recorded one")
    parser.add_argument("--prompt", help="ask with this prompt instead of the recorded one")
    parser.add_argument("--limit", type=int, default=None, help="the first N calls only")


def command(args: argparse.Namespace) -> int:
    """One JSON line per replayed call, then a summary line. Exit 1 when a call failed."""
    # Imported here: `vlm-monitor --help` and the other commands need none of it.
    from vlm_monitor.config import load_config
    from vlm_monitor.vlm.registry import ProviderSet

    path = Path(args.audit)
    if not path.is_file():
        print(f"vlm-monitor replay: no audit file {path}", file=sys.stderr)
        return 2
    docs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    docs = docs[: args.limit] if args.limit is not None else docs
    providers = ProviderSet(load_config(args.config).vlm.providers)
    summary = {"calls": len(docs), "same": 0, "changed": 0, "failed": 0}
    try:
        for doc in docs:
            out = _replay(path.parent, doc, providers, args.provider, args.prompt)
            summary[out["outcome"]] += 1
            print(json.dumps(out), flush=True)
    finally:
        providers.close()
    print(json.dumps({"summary": summary}))
    return 1 if summary["failed"] else 0


def _replay(
    directory: Path,
    doc: dict[str, Any],
    providers: ProviderSet,
    provider_name: str | None,
    prompt: str | None,
) -> dict[str, Any]:
    from vlm_monitor.vlm.audit import load_request
    from vlm_monitor.vlm.base import ProviderError, StructuredAnswerError

    name = provider_name or doc["provider"]
    out: dict[str, Any] = {"id": doc["id"], "provider": name, "before": doc.get("answer")}
    provider = providers.providers.get(name)
    try:
        if provider is None:
            raise ProviderError(f"no provider {name!r} in the configuration")
        request = load_request(directory, doc)
        if prompt is not None:
            request.prompt = prompt
        answer = provider.analyze(request)
    except (ProviderError, ValueError) as exc:
        if isinstance(exc, StructuredAnswerError):
            out["after"] = exc.answer.text
        out.update(outcome="failed", error=str(exc))
        return out
    out["after"] = answer.text
    if doc.get("structured") is not None or answer.structured is not None:
        same = answer.structured == doc.get("structured")
    else:
        same = answer.text.strip() == str(doc.get("answer") or "").strip()
    out["outcome"] = "same" if same else "changed"
    out["structured"] = answer.structured
    return out
