"""Where every result goes: session mapping, storage, broadcast and counting, in one place."""

from vlm_monitor.results.sessions import Session, SessionMap
from vlm_monitor.results.sink import Kind, Listener, Origin, ResultSink

__all__ = ["Kind", "Listener", "Origin", "ResultSink", "Session", "SessionMap"]
