"""``/api/flows``: define, validate, start, stop and run flows; their runs; alerts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException, Query

from vlm_monitor.api.deps import ServicesDep
from vlm_monitor.flows.graph import FlowValidationError
from vlm_monitor.flows.manager import parse_flow
from vlm_monitor.flows.nodes import NODE_TYPES
from vlm_monitor.services import Services

router = APIRouter()
FlowBody = Body(..., description="a flow definition")


@router.get("/api/flows")
async def list_flows(services: ServicesDep) -> list[dict[str, Any]]:
    return [services.flows.status(fid) for fid in list(services.flows.definitions)]


@router.get("/api/flow-nodes")
async def node_types() -> list[dict[str, Any]]:
    """Node types with their inputs, output and parameter schema (for editors)."""
    return [
        {
            "type": name,
            "description": cls.description,
            "inputs": {"min": cls.min_inputs, "max": cls.max_inputs},
            "accepts": sorted(cls.accepts) if cls.accepts is not None else "any",
            "output": cls.output,
            "params": cls.ParamsModel.model_json_schema(),
        }
        for name, cls in sorted(NODE_TYPES.items())
    ]


@router.post("/api/flows/validate")
async def validate_flow(doc: Any = FlowBody) -> dict[str, Any]:
    try:
        parse_flow(doc)
    except FlowValidationError as exc:
        return {"valid": False, "errors": exc.errors}
    return {"valid": True, "errors": []}


@router.post("/api/flows", status_code=201)
async def create_flow(services: ServicesDep, doc: Any = FlowBody) -> dict[str, Any]:
    flow = await services.flows.create(doc)
    return {"definition": flow.model_dump(mode="json"), **services.flows.status(flow.id)}


@router.put("/api/flows/{flow_id}")
async def replace_flow(flow_id: str, services: ServicesDep, doc: Any = FlowBody) -> Any:
    if isinstance(doc, dict) and doc.get("id", flow_id) != flow_id:
        raise HTTPException(422, f"id: the body says {doc.get('id')!r}, the path {flow_id!r}")
    flow = await services.flows.create(
        {**doc, "id": flow_id} if isinstance(doc, dict) else doc, replace=True
    )
    return {"definition": flow.model_dump(mode="json"), **services.flows.status(flow.id)}


@router.get("/api/flows/{flow_id}")
async def get_flow(flow_id: str, services: ServicesDep) -> dict[str, Any]:
    status = services.flows.status(flow_id)
    definition = services.flows.get(flow_id).model_dump(mode="json")
    runs = await services.store.runs(flow_id, 5)
    return {"definition": definition, **status, "last_runs": runs}


@router.delete("/api/flows/{flow_id}")
async def delete_flow(flow_id: str, services: ServicesDep) -> dict[str, Any]:
    await services.flows.delete(flow_id)
    return {"id": flow_id, "deleted": True}


async def _start_or_stop(services: Services, flow_id: str, start: bool) -> dict[str, Any]:
    changed = await (services.flows.start if start else services.flows.stop)(flow_id)
    return {**services.flows.status(flow_id), "changed": changed}


@router.post("/api/flows/{flow_id}/start")
async def start_flow(flow_id: str, services: ServicesDep) -> dict[str, Any]:
    return await _start_or_stop(services, flow_id, start=True)


@router.post("/api/flows/{flow_id}/stop")
async def stop_flow(flow_id: str, services: ServicesDep) -> dict[str, Any]:
    return await _start_or_stop(services, flow_id, start=False)


@router.post("/api/flows/{flow_id}/run", status_code=202)
async def run_flow(flow_id: str, services: ServicesDep) -> dict[str, Any]:
    run_id = await services.flows.run_now(flow_id)
    return {"run_id": run_id}


@router.get("/api/flows/{flow_id}/runs")
async def list_runs(
    flow_id: str, services: ServicesDep, limit: int = Query(20, ge=1, le=500)
) -> list[dict[str, Any]]:
    """Newest first; a run still going is included with its live node states."""
    services.flows.get(flow_id)
    stored = await services.store.runs(flow_id, limit)
    live = {r.run_id: r.to_json() for r in services.flows.recent.get(flow_id, ())}
    return [live.get(doc["run_id"], doc) for doc in stored]


@router.get("/api/flows/{flow_id}/runs/{run_id}")
async def get_run(flow_id: str, run_id: str, services: ServicesDep) -> dict[str, Any]:
    services.flows.get(flow_id)
    record = services.flows.run_record(flow_id, run_id)
    if record is not None:
        return record.to_json()
    for doc in await services.store.runs(flow_id, 500):
        if doc["run_id"] == run_id:
            return doc
    raise HTTPException(404, f"unknown run {run_id!r} of flow {flow_id!r}")


@router.get("/api/alerts")
async def list_alerts(
    services: ServicesDep, flow: str | None = None, limit: int = Query(50, ge=1, le=1000)
) -> list[dict[str, Any]]:
    return await services.store.alerts(flow, limit)
