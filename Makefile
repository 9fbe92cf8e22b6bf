# The targets the README names. Every target does the set-up it needs, idempotently.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup setup-docker images demo test test-unit lint bench bench-terminal clean

# bubblewrap isolates the local backend's commands (a no-op when present; says what to run without root)
setup: $(STAMP)
	@sh scripts/install-bubblewrap.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The Docker backend: docker.io + dockerd --experimental + CRIU 4 (private prefix), then images.
setup-docker:
	@bash scripts/setup-docker.sh
	@sh scripts/install-crun.sh

images: setup-docker
	@bash docker/base/build.sh
	@bash docker/tasks/build.sh

demo: setup
	$(BIN)/tvcache bench sql

test: setup
	$(BIN)/python -m pytest -q tests

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit

lint: setup
	$(BIN)/ruff check tvcache sandbox snapshots tests examples
	$(BIN)/ruff format --check tvcache sandbox snapshots tests examples
	$(BIN)/mypy

bench: setup
	$(BIN)/tvcache bench sql

bench-terminal: setup images
	$(BIN)/tvcache bench terminal --plot out/bench-terminal.png

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
