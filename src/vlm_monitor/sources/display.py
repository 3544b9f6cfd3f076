"""What a decoded video shows: its codec, and its pictures turned upright.

Phones store their recordings turned and say so in a display rotation (the MP4/MOV ``rotate``
tag, display-matrix side data on each decoded picture). FFmpeg's command line applies it by
default; PyAV hands over the stored pixels. A source turns each picture once, here, so live
view, analyzers, clips, the VLM and WebRTC all see the picture the way the phone showed it.

Pictures without a rotation pass through untouched. Turned ones go through an FFmpeg filter
graph (``transpose`` / ``hflip,vflip``), which works on the decoder's own pixel format and
keeps the frame's timestamps: about 0.5 ms per 720p picture here, against ~2 ms for a BGR
conversion plus ``cv2.rotate``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import av.filter

# Degrees counter-clockwise (the display matrix's sense, as FFmpeg's ``-display_rotation``)
# -> the filters that turn the stored picture that way.
_FILTERS: dict[int, tuple[tuple[str, str | None], ...]] = {
    90: (("transpose", "cclock"),),
    180: (("hflip", None), ("vflip", None)),
    270: (("transpose", "clock"),),
}


def display_rotation(frame: Any) -> int:
    """The picture's display rotation as 0, 90, 180 or 270 degrees counter-clockwise."""
    try:
        degrees = float(frame.rotation)
    except (AttributeError, TypeError, ValueError):
        return 0
    return round(degrees / 90.0) % 4 * 90


class Display:
    """One source's codec and display rotation, and the turning of its pictures. Used by the
    source's decoding thread only; the attributes are read by status from anywhere."""

    def __init__(self) -> None:
        self.codec: str | None = None  # FFmpeg's decoder name: h264, hevc, mjpeg, ...
        self.rotation = 0  # of the last picture, degrees counter-clockwise
        self._graph: Any = None
        self._graph_key: tuple[Any, ...] | None = None

    def opened(self, stream: Any) -> None:
        self.codec = stream.codec_context.name

    def upright(self, frame: Any) -> Any:
        rotation = display_rotation(frame)
        self.rotation = rotation
        if rotation == 0:
            return frame
        graph = self._graph_for(frame, rotation)
        graph.push(frame)
        return graph.pull()

    def _graph_for(self, frame: Any, rotation: int) -> Any:
        # A new graph whenever the picture's shape or format changes (a camera switching
        # resolution on reconnect), since a configured graph is fixed to them.
        key = (frame.width, frame.height, frame.format.name, frame.time_base, rotation)
        if key != self._graph_key:
            graph = av.filter.Graph()
            last = graph.add_buffer(
                width=frame.width,
                height=frame.height,
                format=frame.format,
                time_base=frame.time_base or Fraction(1, 90_000),
            )
            for name, args in _FILTERS[rotation]:
                step = graph.add(name, args)
                last.link_to(step)
                last = step
            sink = graph.add("buffersink")
            last.link_to(sink)
            graph.configure()
            self._graph, self._graph_key = graph, key
        return self._graph
