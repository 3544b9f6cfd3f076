PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

# The server itself needs no OS package (PyAV bundles FFmpeg, the models ship inside
# vlm_monitor/models/), so the venv is made without root and `make demo` runs on it alone.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vlm-monitor demo

# Tests and benchmarks drive real peers (ffmpeg, Chromium, GStreamer's RTSP server, Tesseract,
# espeak-ng, Redis): install-os-deps.sh adds the missing ones, with root or sudo.
test: $(STAMP)
	bash scripts/install-os-deps.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src
	# Two workers: most tests wait on servers, cameras and browsers, not on the cores.
	$(BIN)/pytest -n 2

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	bash scripts/install-os-deps.sh
	$(BIN)/python bench/ingest.py > bench-ingest.json
	$(BIN)/python bench/clips.py > bench-clips.json
	$(BIN)/python bench/analyzers.py > bench-analyzers.json
	$(BIN)/python bench/flows.py > bench-flows.json
	$(BIN)/python bench/realtime.py > bench-realtime.json
	$(BIN)/python bench/webrtc.py > bench-webrtc.json
	$(BIN)/python bench/scale.py > bench-scale.json
	$(BIN)/python bench/attack.py > bench-attack.json
	$(BIN)/python bench/zoo.py > bench-zoo.json
	$(BIN)/python bench/events.py > bench-events.json
	$(BIN)/python bench/wall.py > bench-wall.json
	@echo "wrote bench-*.json (ingest, clips, analyzers, flows, realtime, webrtc, scale, attack, zoo, events, wall)"

clean:
	rm -rf $(VENV) data logs .pytest_cache
