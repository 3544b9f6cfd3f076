"""A camera's failures in words its owner can act on, for a stream's ``last_error``.

FFmpeg's own messages name the symptom ("Server returned 401 Unauthorized (authorization
failed)") and quote the URL, password included; these name the likely cause and leave the URL
out (status already shows it, redacted).
"""

from __future__ import annotations

import av

from vlm_monitor.sources.readers import StallError

_HTTP: tuple[tuple[type[BaseException], str], ...] = (
    (av.error.HTTPForbiddenError, "403 Forbidden: the camera refuses this user"),
    (av.error.HTTPNotFoundError, "404 Not Found: no such stream path on the camera"),
    (av.error.HTTPBadRequestError, "400 Bad Request: the camera does not understand the request"),
    (av.error.HTTPTooManyRequestsError, "429 Too Many Requests: the camera limits its clients"),
    (av.error.HTTPServerError, "5xx: the camera's server failed"),
)


def describe(exc: BaseException, credentials: bool) -> str:
    """``credentials``: the URL carries a user (and password), so a 401 means a wrong one."""
    if isinstance(exc, av.error.HTTPUnauthorizedError):
        if credentials:
            return "401 Unauthorized: wrong camera user or password"
        return (
            "401 Unauthorized: the camera wants a user and password (scheme://USER:PASS@HOST/...)"
        )
    for kind, text in _HTTP:
        if isinstance(exc, kind):
            return text
    if isinstance(exc, StallError):  # ours, already in these words
        return str(exc)
    reason = _reason(exc)
    if isinstance(exc, av.error.ConnectionRefusedError):
        return "connection refused: nothing listens at the camera's address (off, or wrong port)"
    if isinstance(exc, (av.error.TimeoutError, TimeoutError)):
        return "timed out: no answer from the camera"
    if isinstance(exc, av.error.InvalidDataError):
        return f"not a readable video stream: damaged, truncated or of an unknown kind ({reason})"
    if isinstance(exc, av.error.FFmpegError):
        return f"{type(exc).__name__}: {reason}"
    return f"{type(exc).__name__}: {exc}"


def _reason(exc: BaseException) -> str:
    """FFmpeg's message without the URL PyAV appends to it."""
    text = getattr(exc, "strerror", None)
    return str(text) if text else str(exc)
