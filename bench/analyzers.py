"""Analyzer benchmark (issue 4, in progress): prints one JSON object.

So far: rPPG accuracy. Synthetic 10 s skin traces at 15 fps with a pulse carrying the
blood-volume colour signature, slow illumination drift, and camera noise at three levels;
heart rates 50..140 bpm, 3 seeds each; MAE and worst error for POS and CHROM, and the cost of
one update. Per-frame analyzer timings and stream capacity come with the analyzers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_rppg import trace
from vlm_monitor.analyzers.rppg import heart_rate
from vlm_monitor.stats import percentile

# Noise on the per-frame MEAN of the skin region, grey levels (std). A 40x40 px region with
# per-pixel sensor noise of 2 / 12 / 24 levels gives about 0.05 / 0.3 / 0.6.
NOISE = {"clean": 0.05, "moderate": 0.3, "heavy": 0.6}
RATES = range(50, 141, 10)


def main() -> int:
    report: dict = {"fps": 15, "window_s": 10, "amplitude": 0.005, "rates_bpm": list(RATES)}
    for method in ("pos", "chrom"):
        rows = {}
        for name, noise in NOISE.items():
            errors = [
                abs(heart_rate(trace(b, noise=noise, seed=s), 15.0, method).bpm - b)
                for b in RATES
                for s in range(3)
            ]
            rows[name] = {
                "mae_bpm": round(float(np.mean(errors)), 2),
                "max_error_bpm": round(float(np.max(errors)), 1),
                "within_3_bpm": round(float(np.mean(np.array(errors) < 3)), 3),
            }
        timings = []
        sample = trace(75)
        for _ in range(50):
            t0 = time.perf_counter()
            heart_rate(sample, 15.0, method)
            timings.append((time.perf_counter() - t0) * 1000)
        rows["update_ms_p50"] = percentile(timings, 50, 3)
        report[method] = rows
    clean_moderate = [report["pos"][k]["mae_bpm"] for k in ("clean", "moderate")]
    report["goal_pos_mae_le_2_on_clean_and_moderate"] = max(clean_moderate) <= 2.0
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
