"""A real RTSP server for tests: GStreamer's gst-rtsp-server, live H.264 test pattern.

Runs under Debian's /usr/bin/python3 (where python3-gi lives): rtsp_server.py PORT PATH [WxH] [FPS]
Prints "READY" once it serves rtsp://127.0.0.1:PORT/PATH.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

port, path = sys.argv[1], sys.argv[2]
width, height = (sys.argv[3] if len(sys.argv) > 3 else "640x360").split("x")
fps = sys.argv[4] if len(sys.argv) > 4 else "15"
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},"
    f"framerate={fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
    "! rtph264pay name=pay0 pt=96 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/" + path, factory)
server.attach(None)
print("READY", flush=True)
GLib.MainLoop().run()
