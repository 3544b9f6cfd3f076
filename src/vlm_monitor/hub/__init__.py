from vlm_monitor.hub.hub import StreamHub
from vlm_monitor.hub.subscription import Subscription

__all__ = ["StreamHub", "Subscription"]
