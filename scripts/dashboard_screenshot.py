"""Takes docs/img/dashboard.png: `vlm-monitor demo` in headless Chromium, once the stream is
live and the analyzers and the clip provider have shown results.

Run from the repository root: .venv/bin/python scripts/dashboard_screenshot.py [OUTPUT]
The PNG is reduced to a 256-colour palette so the README stays light (< 200 KB).
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from pathlib import Path

import httpx
from PIL import Image

from vlm_monitor.testing import ChildProcess, chromium, free_port, wait_until

SIZE = {"width": 1280, "height": 800}
MAX_BYTES = 200_000
SETTLE_S = 15  # emotion timeline and clip results fill in
# A second stream beside the demo's face camera, as a dashboard usually shows several.
LOBBY = {
    "id": "lobby",
    "url": "synthetic://?fps=15&size=1280x720",
    "analyzers": ["motion"],
    "clips": {"clip_seconds": 5, "frames_per_clip": 4},
}


def main(output: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="vlm-monitor-shot-") as tmp:
        port = free_port()
        demo = ChildProcess(
            [sys.executable, "-m", "vlm_monitor", "demo", "--port", str(port),
             "--data-dir", str(Path(tmp) / "data"), "--duration", "180"],
            Path(tmp) / "demo.out",
            cwd=Path(tmp),
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, 60, what="demo")
            httpx.post(f"{url}/api/streams", json=LOBBY).raise_for_status()
            png = _shoot(url)
        finally:
            demo.stop()
    small = _palette(png)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(small)
    print(json.dumps({"wrote": str(output), "bytes": len(small), **SIZE}))
    return 0 if len(small) < MAX_BYTES else 1


def _shoot(url: str) -> bytes:
    with chromium() as browser:
        page = browser.new_page(viewport=SIZE)
        page.goto(url + "/")
        page.wait_for_function(
            "() => [...document.querySelectorAll('article[data-stream]')]"
            ".filter(a => a.dataset.state === 'live').length === 2",
            timeout=30_000,
        )
        page.locator("article[data-stream=lobby] .result-list li").first.wait_for(timeout=60_000)
        page.wait_for_timeout(SETTLE_S * 1000)
        page.wait_for_function(  # a heart-rate reading, not "not enough signal yet"
            "() => document.querySelector('article[data-stream=demo] .bpm')?.dataset.bpm",
            timeout=60_000,
        )
        return page.screenshot()


def _palette(png: bytes) -> bytes:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
    return out.getvalue()


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/img/dashboard.png")))
