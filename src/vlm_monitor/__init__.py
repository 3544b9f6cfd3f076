"""vlm-monitor: watch live video with AI."""

__version__ = "0.1.0"
