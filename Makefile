# framefleet: `make example` renders the example, `make test` runs the suite.
# Both set up what they need first (system packages via apt when missing, then .venv).
VENV := .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.setup-done

.PHONY: setup example test lint stubs bench clean

setup: $(SETUP_STAMP)

$(SETUP_STAMP): pyproject.toml scripts/install_system_deps.sh
	scripts/install_system_deps.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

example: setup
	$(VENV)/bin/framefleet render examples/referral/referral.html \
	  --params examples/referral/ada.json --out out/

test: lint
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

stubs: setup
	PYTHON=$(PY) scripts/generate_stubs.sh

bench: setup
	$(PY) bench/pipeline_fps.py

clean:
	rm -rf $(VENV) out
