"""Incidents a person should see: opened, updated and closed from results and stream states."""

from vlm_monitor.events.model import KINDS, Change, EventTracker, Incident
from vlm_monitor.events.service import EventService

__all__ = ["KINDS", "Change", "EventService", "EventTracker", "Incident"]
