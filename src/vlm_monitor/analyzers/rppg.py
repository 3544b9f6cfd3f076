"""Camera-based heart rate (rPPG) maths: POS (Wang et al. 2017) and CHROM (de Haan & Jeanne
2013) on a trace of mean skin RGB, then detrend, band-pass and a spectral peak. Pure NumPy, no
I/O: the heart-rate analyzer feeds it per-frame means of the tracked face's skin pixels
(forehead and cheeks, from the Face Mesh landmarks).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

HR_BAND_HZ = (0.7, 3.0)  # 42..180 bpm
# Fewer samples than this per second alias the top of the band (3 Hz needs > 6): the reading
# is refused with a reason rather than given wrong. Overload shedding never goes below it.
MIN_RATE_HZ = 7.0
_POS_PROJECTION = np.array([[0.0, 1.0, -1.0], [-2.0, 1.0, 1.0]])


def pos(rgb: np.ndarray, fps: float) -> np.ndarray:
    """Plane-orthogonal-to-skin pulse signal of an (N, 3) RGB trace, overlap-added over
    windows of 1.6 s (Wang et al. 2017, algorithm 1), all windows at once."""
    n = len(rgb)
    win = math.ceil(1.6 * fps)
    out = np.zeros(n)
    if n < win:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(rgb, win, axis=0)  # (m, 3, win)
    mean = windows.mean(axis=2, keepdims=True)
    valid = np.all(mean[:, :, 0] > 0, axis=1)
    s = np.einsum("ij,mjw->miw", _POS_PROJECTION, windows / np.where(mean > 0, mean, 1.0))
    std0, std1 = s[:, 0].std(axis=1), s[:, 1].std(axis=1)
    alpha = np.divide(std0, std1, out=np.zeros_like(std0), where=std1 > 0)
    h = s[:, 0] + alpha[:, None] * s[:, 1]
    h -= h.mean(axis=1, keepdims=True)
    h[~valid] = 0.0
    m = len(h)
    for k in range(win):  # overlap-add: window i covers out[i : i + win]
        out[k : k + m] += h[:, k]
    return out


def chrom(rgb: np.ndarray, fps: float) -> np.ndarray:
    """Chrominance pulse signal (de Haan & Jeanne 2013): colour normalised by a 1.6 s moving
    mean, X/Y chrominance band-passed over the whole trace, then alpha-tuned per 1.6 s
    Hann window and overlap-added."""
    n = len(rgb)
    win = math.ceil(1.6 * fps)
    win += win % 2
    kernel = np.ones(win) / win
    means = np.stack([np.convolve(rgb[:, c], kernel, mode="same") for c in range(3)], axis=1)
    norm = rgb / np.maximum(means, 1e-9)
    x = bandpass(3 * norm[:, 0] - 2 * norm[:, 1], fps)
    y = bandpass(1.5 * norm[:, 0] + norm[:, 1] - 1.5 * norm[:, 2], fps)
    out = np.zeros(n)
    hann = np.hanning(win)
    for start in range(0, n - win + 1, win // 2):
        xs, ys = x[start : start + win], y[start : start + win]
        alpha = xs.std() / ys.std() if ys.std() > 0 else 0.0
        s = xs - alpha * ys
        out[start : start + win] += hann * (s - s.mean())
    return out


def detrend(signal: np.ndarray, smoothing: float = 100.0) -> np.ndarray:
    """Smoothness-priors detrending (Tarvainen et al. 2002): removes slow illumination drift."""
    n = len(signal)
    if n < 3:
        centred: np.ndarray = signal - signal.mean()
        return centred
    detrended: np.ndarray = _detrend_operator(n, smoothing) @ signal
    return detrended


@functools.lru_cache(maxsize=16)
def _detrend_operator(n: int, smoothing: float) -> np.ndarray:
    """``I - (I + s^2 D2'D2)^-1`` for signals of length n. The window length barely changes
    between updates, so the O(n^3) solve runs once per length, not once a second per stream:
    each update is then one small matrix-vector product. (A dense solve per update also
    started OpenBLAS's thread pool in every analyzer thread, which serialised them.)"""
    d2 = np.zeros((n - 2, n))
    idx = np.arange(n - 2)
    d2[idx, idx], d2[idx, idx + 1], d2[idx, idx + 2] = 1.0, -2.0, 1.0
    eye = np.eye(n)
    operator: np.ndarray = eye - np.linalg.inv(eye + smoothing**2 * d2.T @ d2)
    operator.setflags(write=False)
    return operator


def bandpass(signal: np.ndarray, fps: float, band: tuple[float, float] = HR_BAND_HZ) -> np.ndarray:
    """Zero-phase band-pass by masking the spectrum (the windows are short: no filter ringing
    to settle)."""
    spectrum = np.fft.rfft(signal - signal.mean())
    freqs = np.fft.rfftfreq(len(signal), 1.0 / fps)
    spectrum[(freqs < band[0]) | (freqs > band[1])] = 0
    return np.fft.irfft(spectrum, len(signal))


@dataclass(frozen=True)
class Spectrum:
    bpm: float
    snr_db: float  # power near the peak and its first harmonic vs the rest of the band


def spectral_peak(
    signal: np.ndarray, fps: float, band: tuple[float, float] = HR_BAND_HZ
) -> Spectrum:
    """Heart rate from the periodogram peak, zero-padded to >= 4096 points and refined by
    parabolic interpolation."""
    n_fft = max(4096, 1 << math.ceil(math.log2(len(signal))))
    power = np.abs(np.fft.rfft(signal * np.hanning(len(signal)), n_fft)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / fps)
    in_band = (freqs >= band[0]) & (freqs <= band[1])
    idx = np.flatnonzero(in_band)
    k = int(idx[np.argmax(power[idx])])
    shift = 0.0
    if 0 < k < len(power) - 1:
        a, b, c = power[k - 1], power[k], power[k + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom != 0 else 0.0
    peak_hz = freqs[k] + shift * (freqs[1] - freqs[0])
    lobe = max(0.1, 2.0 * fps / len(signal))  # Hann main-lobe half-width, Hz
    near = (np.abs(freqs - peak_hz) <= lobe) | (np.abs(freqs - 2 * peak_hz) <= lobe)
    signal_power = power[in_band & near].sum()
    noise_power = power[in_band & ~near].sum()
    snr = 10 * math.log10(signal_power / noise_power) if noise_power > 0 else 99.0
    return Spectrum(bpm=peak_hz * 60.0, snr_db=snr)


def heart_rate(rgb: np.ndarray, fps: float, method: str = "pos") -> Spectrum:
    """Heart rate of an (N, 3) mean-skin-RGB trace sampled at ``fps``."""
    if method not in ("pos", "chrom"):
        raise ValueError(f"unknown rPPG method {method!r}: use pos or chrom")
    raw = pos(rgb, fps) if method == "pos" else chrom(rgb, fps)
    return spectral_peak(bandpass(detrend(raw), fps), fps)


@dataclass(frozen=True)
class HeartRateReading:
    """One update of the sliding-window estimate; ``bpm`` is None with a ``reason`` when the
    signal cannot be trusted."""

    bpm: float | None
    snr_db: float | None
    window_s: float
    method: str
    reason: str | None = None
    ts: float = 0.0  # unix seconds of the newest sample in the window


class HeartRateEstimator:
    """Sliding-window heart rate over per-frame mean skin RGB. Not thread-safe: one per stream.

    Samples arrive at whatever rate the camera gives; the window is resampled to a uniform
    ``rate_hz`` before POS/CHROM. An update is produced every ``update_s`` once ``window_s`` of
    signal is buffered; a gap (no face), darkness or a low SNR give ``bpm=None`` and a reason.
    """

    def __init__(
        self,
        window_s: float = 10.0,
        update_s: float = 1.0,
        method: str = "pos",
        rate_hz: float = 15.0,
        min_brightness: float = 40.0,
        min_snr_db: float = -3.0,
        max_gap_s: float = 1.0,
    ) -> None:
        self.window_s, self.update_s, self.method, self.rate_hz = (
            window_s,
            update_s,
            method,
            rate_hz,
        )
        self.min_brightness, self.min_snr_db, self.max_gap_s = min_brightness, min_snr_db, max_gap_s
        self._times: list[float] = []
        self._rgb: list[np.ndarray] = []
        self._next_update: float | None = None

    def add(self, ts: float, mean_rgb: np.ndarray | None) -> HeartRateReading | None:
        """Feed one frame (``mean_rgb`` None when no face was found); returns a reading when one
        is due."""
        if mean_rgb is None:
            self._times.clear()
            self._rgb.clear()
            return self._due(ts, HeartRateReading(None, None, 0.0, self.method, "no face", ts))
        if self._times and ts - self._times[-1] > self.max_gap_s:
            self._times.clear()
            self._rgb.clear()
        self._times.append(ts)
        self._rgb.append(np.asarray(mean_rgb, dtype=np.float64))
        while self._times and ts - self._times[0] > self.window_s:
            self._times.pop(0)
            self._rgb.pop(0)
        span = self._times[-1] - self._times[0]
        if span < self.window_s * 0.9:
            return self._due(
                ts,
                HeartRateReading(
                    None, None, round(span, 2), self.method, "not enough signal yet", ts
                ),
            )
        rate = (len(self._times) - 1) / span
        if rate < MIN_RATE_HZ:
            return self._due(
                ts,
                HeartRateReading(
                    None,
                    None,
                    round(span, 2),
                    self.method,
                    f"{rate:.1f} frames/s analysed, heart rate needs {MIN_RATE_HZ:g}: "
                    "the machine is overloaded",
                    ts,
                ),
            )
        if self._next_update is not None and ts < self._next_update:
            return None  # the window is read once per update, not per frame
        rgb = np.stack(self._rgb)
        if rgb.mean() < self.min_brightness:
            return self._due(
                ts, HeartRateReading(None, None, round(span, 2), self.method, "too dark", ts)
            )
        return self._due(ts, None, rgb)

    def _due(
        self, ts: float, reading: HeartRateReading | None, rgb: np.ndarray | None = None
    ) -> HeartRateReading | None:
        if self._next_update is not None and ts < self._next_update:
            return None
        self._next_update = ts + self.update_s
        if reading is not None:
            return reading
        assert rgb is not None
        times = np.asarray(self._times)
        grid = np.arange(times[0], times[-1], 1.0 / self.rate_hz)
        uniform = np.stack([np.interp(grid, times, rgb[:, c]) for c in range(3)], axis=1)
        est = heart_rate(uniform, self.rate_hz, self.method)
        span = round(float(times[-1] - times[0]), 2)
        if est.snr_db < self.min_snr_db:
            return HeartRateReading(
                None,
                round(est.snr_db, 2),
                span,
                self.method,
                "signal too weak or too much motion",
                ts,
            )
        return HeartRateReading(
            round(est.bpm, 1), round(est.snr_db, 2), span, self.method, None, ts
        )


@dataclass(frozen=True)
class SkinMask:
    """The skin pixels of a face's skin region in one frame: ``mask`` over the frame's
    ``[y0:y1, x0:x1]``."""

    x0: int
    y0: int
    x1: int
    y1: int
    mask: np.ndarray

    def mean(self, bgr: np.ndarray) -> np.ndarray:
        """Mean RGB under the mask in ``bgr`` (this frame or another of the same size)."""
        b, g, r, _ = cv2.mean(bgr[self.y0 : self.y1, self.x0 : self.x1], mask=self.mask)
        return np.array([r, g, b])


def skin_mask(
    bgr: np.ndarray,
    regions: Sequence[np.ndarray],
    exclude: Sequence[np.ndarray] = (),
    min_pixels: int = 150,
) -> SkinMask | None:
    """The skin pixels inside the face's skin ``regions`` less ``exclude`` (polygons in frame
    pixels, from the landmarks: forehead, cheeks and chin without eyes, brows, nose and
    mouth), checked against a YCrCb skin range (Cr 133-173, Cb 77-127) so hair, a hand or
    glasses over them in this frame do not count; None when too little skin shows."""
    if not regions:
        return None
    h, w = bgr.shape[:2]
    points = np.concatenate([r.reshape(-1, 2) for r in regions])
    x0, y0 = np.clip(points.min(axis=0), 0, [w, h])
    x1, y1 = np.clip(points.max(axis=0) + 1, 0, [w, h])
    if x1 <= x0 or y1 <= y0:
        return None
    roi = bgr[y0:y1, x0:x1]
    offset = np.array([x0, y0])
    mask: np.ndarray = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillPoly(mask, [r.reshape(-1, 1, 2) - offset for r in regions], 255)
    if exclude:
        cv2.fillPoly(mask, [r.reshape(-1, 1, 2) - offset for r in exclude], 0)
    ycrcb = cv2.cvtColor(roi, cv2.COLOR_BGR2YCrCb)
    mask = cv2.bitwise_and(mask, cv2.inRange(ycrcb, (0, 133, 77), (255, 173, 127)))
    if int(np.count_nonzero(mask)) < min_pixels:
        return None
    return SkinMask(int(x0), int(y0), int(x1), int(y1), mask)


Regions = tuple[list[np.ndarray], list[np.ndarray]]  # polygons to take, to leave out
GAIN_RANGE = (0.5, 2.0)  # a skin trace's level correction beyond these is not a small step
# Regions replaced sooner than this leave steps above the heart-rate band (a region and back
# within 2 x 1/6 s is 3 Hz, the band's top), and correcting each step adds its noise to the
# level: with the Face Mesh on every frame and heavy sensor noise that walk was worse than the
# steps. Regions that stayed longer are continued.
STEADY_REGION_S = 1 / 6


class SkinTrace:
    """Per-frame skin colour of a tracked face, without steps where its skin region moves.

    The region comes from the last Face Mesh run and stays put until the next one (the
    tracker runs the mesh again when the face moves, and at least every detection), so the
    skin pixels are picked once per region, on its first frame, and later frames only
    average under them. When the region moves on to new landmarks the mean jumps a little
    (other pixels), as often as the mesh runs: a sway makes that a few times a second, right
    in the heart-rate band. So on the frame where a region that stayed ``STEADY_REGION_S``
    or longer is replaced, both are read, and the new one is scaled to continue the old one's
    level; the gain drifts slowly with the face, which the detrending removes."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the region (the face was lost): the next one starts the trace afresh."""
        self._regions: Regions | None = None
        self._mask: SkinMask | None = None
        self._shape: tuple[int, ...] = ()
        self._gain = np.ones(3)
        self._since = float("-inf")  # when the region in use came

    def mean(self, bgr: np.ndarray, regions: Regions, ts: float) -> np.ndarray | None:
        """The skin's mean RGB in ``bgr`` (a frame at ``ts``), continuing the trace."""
        if bgr.shape != self._shape:  # another picture size: the masks no longer fit
            self.reset()
            self._shape = bgr.shape
        if regions is not self._regions or self._mask is None:
            mask = skin_mask(bgr, *regions)
            if mask is None:
                self.reset()
                return None
            if self._mask is not None and ts - self._since >= STEADY_REGION_S:
                gain = self._gain * self._mask.mean(bgr) / np.maximum(mask.mean(bgr), 1e-6)
                # Far from 1 means the two regions do not see the same skin (a face found
                # again elsewhere, a dark edge): start the level afresh instead of carrying it.
                self._gain = (
                    gain if np.all((gain > GAIN_RANGE[0]) & (gain < GAIN_RANGE[1])) else np.ones(3)
                )
            self._regions, self._mask, self._since = regions, mask, ts
        adjusted: np.ndarray = self._mask.mean(bgr) * self._gain
        return adjusted
