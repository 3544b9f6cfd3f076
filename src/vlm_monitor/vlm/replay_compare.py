"""What ``vlm-monitor replay`` reports: a recorded answer and its replay side by side, then
the whole run summed up (agreement, fields, latency, tokens, cost, disagreements). Pure: no
provider, no files."""

from __future__ import annotations

import statistics
import time
from typing import Any


def alert_decision(structured: Any) -> bool | None:
    """The alert a structured answer makes: its ``alert`` (what opens an alert event), or for
    the ``review`` schema a ``threat_level`` of 1 or more; None for a free-text answer."""
    if not isinstance(structured, dict):
        return None
    if "alert" in structured:
        return bool(structured["alert"])
    level = structured.get("threat_level")
    if isinstance(level, int | float) and not isinstance(level, bool):
        return level >= 1
    return None


def compare(recorded: dict[str, Any], replayed: dict[str, Any]) -> dict[str, Any]:
    """One call: ``recorded`` and ``replayed`` are ``{"answer", "structured", "error",
    "latency_s", "tokens", "cost"}``. ``agree`` is None when either side has no decision."""
    before, after = alert_decision(recorded["structured"]), alert_decision(replayed["structured"])
    agree = None if before is None or after is None else before == after
    fields: dict[str, bool] = {}
    if isinstance(recorded["structured"], dict) and isinstance(replayed["structured"], dict):
        for key in sorted(recorded["structured"].keys() | replayed["structured"].keys()):
            fields[key] = recorded["structured"].get(key) == replayed["structured"].get(key)
    return {
        "recorded": {**recorded, "alert": before},
        "replayed": {**replayed, "alert": after},
        "agree": agree,
        "fields": fields,
    }


def _side(rows: list[dict[str, Any]], side: str) -> dict[str, Any]:
    answered = [r[side] for r in rows if r[side]["error"] is None]
    latencies = [a["latency_s"] for a in answered if a["latency_s"] is not None]
    return {
        "answered": len(answered),
        "failed": len(rows) - len(answered),
        "latency_s": {
            "p50": round(statistics.median(latencies), 3) if latencies else None,
            "mean": round(statistics.fmean(latencies), 3) if latencies else None,
        },
        "tokens": sum(a["tokens"] or 0 for a in answered),
        "cost": round(sum(a["cost"] or 0.0 for a in answered), 6),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run: ``rows`` are ``compare`` results with the call's ``id, stream, ts`` added."""
    decided = [r for r in rows if r["agree"] is not None]
    agreeing = sum(1 for r in decided if r["agree"])
    fields: dict[str, dict[str, int]] = {}
    for r in rows:
        for key, same in r["fields"].items():
            counts = fields.setdefault(key, {"same": 0, "different": 0})
            counts["same" if same else "different"] += 1
    return {
        "calls": len(rows),
        "agreement": {
            "decided": len(decided),
            "agree": agreeing,
            "disagree": len(decided) - agreeing,
            "rate": round(agreeing / len(decided), 3) if decided else None,
        },
        "fields": fields,
        "recorded": _side(rows, "recorded"),
        "replayed": _side(rows, "replayed"),
        "disagreements": [r for r in rows if _disagrees(r)],
    }


def _disagrees(row: dict[str, Any]) -> bool:
    """A different decision, a structured field that changed, or a side that failed."""
    if row["agree"] is False or row["replayed"]["error"] is not None:
        return True
    if row["fields"]:
        return not all(row["fields"].values())
    return False


def render(report: dict[str, Any]) -> str:
    """The human form: both sides in columns, then each disagreement."""
    rec, rep = report["recorded"], report["replayed"]
    agreement = report["agreement"]
    width = 22

    def line(label: str, left: Any, right: Any) -> str:
        return f"{label:<{width}}{left!s:<{width + 4}}{right!s}"

    def latency(side: dict[str, Any]) -> str:
        p50, mean = side["latency_s"]["p50"], side["latency_s"]["mean"]
        return "-" if p50 is None else f"{p50:.2f} s p50, {mean:.2f} s mean"

    run = report["run"]
    rate = agreement["rate"]
    out = [
        f"replay of {report['calls']} recorded call(s) from {run['audit']}",
        line(
            "",
            f"recorded ({', '.join(run['recorded_providers']) or '-'})",
            f"replayed ({run['provider']})",
        ),
        line("answered", rec["answered"], rep["answered"]),
        line("failed", rec["failed"], rep["failed"]),
        line("latency", latency(rec), latency(rep)),
        line("tokens", rec["tokens"], rep["tokens"]),
        line("cost", f"{rec['cost']:g}", f"{rep['cost']:g}"),
        "",
        f"alert decisions: {agreement['agree']} of {agreement['decided']} agree"
        + ("" if rate is None else f" ({rate:.0%})")
        + (
            f"; {report['calls'] - agreement['decided']} without a decision"
            if report["calls"] > agreement["decided"]
            else ""
        ),
    ]
    for key, counts in report["fields"].items():
        total = counts["same"] + counts["different"]
        out.append(f"  field {key}: {counts['same']} of {total} the same")
    out += ["", f"disagreements: {len(report['disagreements'])}"]
    for row in report["disagreements"]:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["ts"]))
        changed = [k for k, same in row["fields"].items() if not same]
        what = f"alert {row['recorded']['alert']} -> {row['replayed']['alert']}"
        if changed:
            what += f"; fields changed: {', '.join(changed)}"
        out.append(f"- {row['id']}  {row['stream']}  {when}  {what}")
        for side in ("recorded", "replayed"):
            answer = row[side]
            said = answer["error"] or answer["structured"] or answer["answer"]
            out.append(f"    {side}: {str(said)[:300]}")
    return "\n".join(out)
