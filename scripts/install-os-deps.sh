#!/usr/bin/env bash
# OS packages the test suite and benchmarks need (the server itself needs none: PyAV bundles
# FFmpeg). Installs only what is missing; needs root or sudo.
set -euo pipefail
PKGS=(
  ffmpeg                      # reference decoder for benchmarks, file fixtures for tests
  chromium                    # dashboard tests (Playwright drives /usr/bin/chromium)
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp   # a real RTSP server for tests
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
  gstreamer1.0-plugins-bad                                 # x265enc: the H.265 RTSP camera
  tesseract-ocr tesseract-ocr-eng                          # the OCR analyzer
  espeak-ng                                                # speech for the realtime VAD tests
  redis-server                                             # bus kind redis (multi-node tests)
  mosquitto                                                # a real MQTT broker (MQTT tests)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing OS packages: ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
