"""Source URLs: ``rtsp://``, ``tcp://host:port``, ``http(s)://`` (MJPEG over HTTP, HLS),
``file://path``, ``whip://`` (published here),
``synthetic://?fps=&size=[&scene=moving|face|two_faces&bpm=&pulse=]``.

A URL names exactly one of these schemes, and its text never becomes an FFmpeg protocol or
option: FFmpeg reads ``proto:`` prefixes (``concat:``, ``subfile:``, ``pipe:`` ...) in a
file name as protocols, ``?listen=1`` on a tcp:// URL as a socket option and bare words such
as ``?udp`` or ``?http`` on an rtsp:// URL as transport switches. Everything a source may do
beyond reading its one input comes from the stream's configuration (``transport``,
``listen``), never from the URL. The one input that names others is an HLS playlist over
http(s)://, whose segments are read over HTTP(S) only (the source's protocol whitelist).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from vlm_monitor.camera.scene import SCENES

SCHEMES = ("rtsp", "rtsps", "tcp", "http", "https", "file", "synthetic", "whip")
# Query words FFmpeg's RTSP client takes as its own options (transport, HTTP tunnelling,
# source filtering) or that name a listener in its option set; anything else in the query is
# the camera's business and is passed on.
RTSP_RESERVED = frozenset(
    {"udp", "tcp", "multicast", "http", "https", "filter_src", "listen", "listen_timeout",
     "rtsp_flags"}
)  # fmt: skip


@dataclass(frozen=True)
class SourceUrl:
    scheme: str
    url: str  # what FFmpeg opens (or the original, for synthetic://)
    path: str = ""  # file://: the path FFmpeg's file protocol opens (relative to the cwd)
    params: dict[str, str] = field(default_factory=dict)


def parse_source_url(url: str) -> SourceUrl:
    """Validate a source URL; raises ValueError with a message a user can act on."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("url is empty")
    if any(c.isspace() for c in url):
        raise ValueError(f"url {url!r} contains whitespace")
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError(f"url {url!r} contains control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported scheme {parts.scheme!r}: use one of {', '.join(SCHEMES)}")
    # FFmpeg looks protocols up case-sensitively: hand it the scheme as it knows it.
    canonical = scheme + url[len(parts.scheme) :]
    if scheme in ("rtsp", "rtsps", "tcp", "http", "https"):
        return _network_url(url, canonical, scheme)
    if scheme == "whip":  # published to this server over WebRTC (POST /whip/{stream id})
        return SourceUrl(scheme, url, params=_params(parts.query))
    if scheme == "file":
        return _file_url(url)
    return _synthetic_url(url, _params(parts.query))


def parse_stream_source(url: str, listen: bool = False) -> SourceUrl:
    """``parse_source_url`` plus the settings that only make sense for some schemes."""
    spec = parse_source_url(url)
    if listen and spec.scheme != "tcp":
        raise ValueError(
            f"listen: true is only for tcp:// urls (the server waits for the camera on "
            f"HOST:PORT), not {spec.scheme}://"
        )
    return spec


def _params(query: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(query).items()}


def _network_url(url: str, canonical: str, scheme: str) -> SourceUrl:
    parts = urlsplit(canonical)
    shown = redact_url(url)  # messages reach logs and API replies
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"url {shown!r} has an invalid port") from None
    if not parts.hostname:
        raise ValueError(f"url {shown!r} has no host")
    # Python ends the query at '#', FFmpeg does not: a '?' anywhere may reach FFmpeg.
    if "#" in url:
        raise ValueError(f"url {shown!r}: no #fragment (percent-encode '#' as %23)")
    if scheme == "tcp":
        if port is None:
            raise ValueError(f"url {shown!r} needs a port: tcp://HOST:PORT")
        if "?" in url or parts.path not in ("", "/"):
            raise ValueError(
                f"url {shown!r}: tcp:// takes only HOST:PORT, no path or ?options (FFmpeg would "
                "read them as socket options); to wait for the camera to connect, set "
                "listen: true on the stream"
            )
        return SourceUrl(scheme, canonical)
    if scheme in ("http", "https"):  # FFmpeg's HTTP client sends the query to the camera
        return SourceUrl(scheme, canonical, params=_params(parts.query))
    reserved = sorted(_query_words(url) & RTSP_RESERVED)
    if reserved:
        raise ValueError(
            f"url {shown!r}: {', '.join(reserved)} in the query would be read by FFmpeg as its "
            "own options, not sent to the camera; set the transport with the stream's "
            "transport setting"
        )
    return SourceUrl(scheme, canonical, params=_params(parts.query))


def _query_words(url: str) -> set[str]:
    """Option names as FFmpeg splits a query: after the first '?', at every '?' and '&'."""
    _, sep, query = url.partition("?")
    if not sep:
        return set()
    words = query.replace("?", "&").split("&")
    return {w.partition("=")[0].lower() for w in words}


def _file_url(url: str) -> SourceUrl:
    if "?" in url or "#" in url:
        raise ValueError(
            f"url {url!r}: file:// takes a path only, no ?query or #fragment "
            "(percent-encode '?' as %3F and '#' as %23 in file names)"
        )
    parts = urlsplit(url)
    path = unquote(parts.netloc + parts.path)
    if not path:
        raise ValueError(f"url {url!r} has no path")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise ValueError(f"url {url!r}: the path contains control characters")
    if ":" in path.partition("/")[0]:
        raise ValueError(
            f"url {url!r}: {path.partition(':')[0]}: is FFmpeg protocol syntax, not a file; "
            "file:// opens a plain file (write a relative name with a colon as ./name)"
        )
    # The "file:" prefix pins FFmpeg to its file protocol whatever the path looks like.
    return SourceUrl("file", f"file:{path}", path=path)


def _synthetic_url(url: str, params: dict[str, str]) -> SourceUrl:
    fps = params.get("fps", "15")
    size = params.get("size", "1280x720")
    try:
        fps_value = float(fps)
        width, height = (int(p) for p in size.lower().split("x"))
    except ValueError:
        raise ValueError(f"synthetic url {url!r}: fps must be a number and size WxH") from None
    if not 0 < fps_value <= 120:
        raise ValueError(f"synthetic url {url!r}: fps must be in (0, 120]")
    if width < 160 or height < 90 or width > 7680 or height > 4320 or width % 2 or height % 2:
        raise ValueError(f"synthetic url {url!r}: size must be even, 160x90 .. 7680x4320")
    scene = params.get("scene", "moving")
    if scene not in SCENES:
        raise ValueError(f"synthetic url {url!r}: scene must be one of {', '.join(SCENES)}")
    try:
        bpm, pulse = float(params.get("bpm", "72")), float(params.get("pulse", "0.006"))
    except ValueError:
        raise ValueError(f"synthetic url {url!r}: bpm and pulse must be numbers") from None
    if not 30 <= bpm <= 240 or not 0 <= pulse <= 0.1:
        raise ValueError(f"synthetic url {url!r}: bpm must be in [30, 240], pulse in [0, 0.1]")
    return SourceUrl(
        "synthetic",
        url,
        params={
            "fps": str(fps_value),
            "size": f"{width}x{height}",
            "scene": scene,
            "bpm": str(bpm),
            "pulse": str(pulse),
        },
    )


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``: for logs and status documents
    (camera URLs often carry ``user:password@``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
