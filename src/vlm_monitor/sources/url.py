"""Source URLs: ``rtsp://``, ``tcp://host:port``, ``file://path``, ``whip://`` (published here),
``synthetic://?fps=&size=[&scene=moving|face&bpm=&pulse=]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

SCHEMES = ("rtsp", "rtsps", "tcp", "file", "synthetic", "whip")


@dataclass(frozen=True)
class SourceUrl:
    scheme: str
    url: str  # what FFmpeg opens (or the original, for synthetic://)
    path: str = ""
    params: dict[str, str] = field(default_factory=dict)


def parse_source_url(url: str) -> SourceUrl:
    """Validate a source URL; raises ValueError with a message a user can act on."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("url is empty")
    if any(c.isspace() for c in url):
        raise ValueError(f"url {url!r} contains whitespace")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported scheme {parts.scheme!r}: use one of {', '.join(SCHEMES)}")
    params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if scheme in ("rtsp", "rtsps", "tcp"):
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"url {url!r} has an invalid port") from None
        if not parts.hostname:
            raise ValueError(f"url {url!r} has no host")
        if scheme == "tcp" and port is None:
            raise ValueError(f"url {url!r} needs a port: tcp://HOST:PORT")
        return SourceUrl(scheme, url, params=params)
    if scheme == "whip":  # published to this server over WebRTC (POST /whip/{stream id})
        return SourceUrl(scheme, url, params=params)
    if scheme == "file":
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ValueError(f"url {url!r} has no path")
        return SourceUrl(scheme, path, path=path, params=params)
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
    if scene not in ("moving", "face"):
        raise ValueError(f"synthetic url {url!r}: scene must be moving or face")
    try:
        bpm, pulse = float(params.get("bpm", "72")), float(params.get("pulse", "0.006"))
    except ValueError:
        raise ValueError(f"synthetic url {url!r}: bpm and pulse must be numbers") from None
    if not 30 <= bpm <= 240 or not 0 <= pulse <= 0.1:
        raise ValueError(f"synthetic url {url!r}: bpm must be in [30, 240], pulse in [0, 0.1]")
    return SourceUrl(
        scheme,
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
