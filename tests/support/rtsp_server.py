"""A real RTSP server for tests: GStreamer's gst-rtsp-server, a live test pattern.

Runs under Debian's /usr/bin/python3 (where python3-gi lives):

    rtsp_server.py PORT PATH [WxH] [FPS] [--codec h264|h265] [--audio]
                   [--auth basic|digest --user USER --password PASSWORD]

Prints "READY" once it serves rtsp://127.0.0.1:PORT/PATH.
"""

import argparse

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

ENCODERS = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
    "! rtph264pay name=pay0 pt=96 config-interval=-1",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
    "! rtph265pay name=pay0 pt=96 config-interval=-1",
}
AUDIO = "audiotestsrc is-live=true wave=sine ! audioconvert ! opusenc ! rtpopuspay name=pay1 pt=97"

parser = argparse.ArgumentParser()
parser.add_argument("port")
parser.add_argument("path")
parser.add_argument("size", nargs="?", default="640x360")
parser.add_argument("fps", nargs="?", default="15")
parser.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
parser.add_argument("--audio", action="store_true")
parser.add_argument("--auth", choices=["basic", "digest"])
parser.add_argument("--user", default="")
parser.add_argument("--password", default="")
args = parser.parse_args()

width, height = args.size.split("x")
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(args.port)
factory = GstRtspServer.RTSPMediaFactory()
video = (
    f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},"
    f"framerate={args.fps}/1 ! " + ENCODERS[args.codec].format(fps=args.fps)
)
factory.set_launch(f"( {video} {AUDIO if args.audio else ''} )")
factory.set_shared(True)

if args.auth:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "camera-user")
    if args.auth == "basic":
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
    else:
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        auth.add_digest(args.user, args.password, token)
    server.set_auth(auth)
    # Only the authenticated role may see and build the media: anyone else gets 401.
    role = Gst.Structure.new_from_string(
        "camera-user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
    )
    factory.add_role_from_structure(role)

server.get_mount_points().add_factory("/" + args.path, factory)
server.attach(None)
print("READY", flush=True)
GLib.MainLoop().run()
