# framefleet: `make example` renders the example, `make test` runs the suite.
# Both set up what they need first (system packages via apt when missing, then .venv, then
# the pinned proto tools in .tools/: scripts/install_tools.sh).
VENV := .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.setup-done
TOOLS_STAMP := .tools/.setup-done
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
CARGO ?= $(shell command -v cargo || echo $(HOME)/.cargo/bin/cargo)
# The Go and Rust interop tests start a real coordinator and agent with this interpreter.
CLIENT_TEST_ENV := FRAMEFLEET_PYTHON=$(abspath $(PY))
# VideoFlow's browser runtime for VideoJSON jobs, bundled from npm (not committed).
VIDEOFLOW := agent/videoflow
VIDEOFLOW_BUNDLE := $(VIDEOFLOW)/dist/runtime.js
# The @fontsource faces HyperFrames compositions resolve their fonts to (not committed).
HF_FONTS := agent/hf_fonts
HF_FONTS_STAMP := $(HF_FONTS)/dist/.built

.PHONY: setup example test test-fast test-clients test-go test-rust lint stubs golden bench clean

setup: $(SETUP_STAMP) $(TOOLS_STAMP) $(VIDEOFLOW_BUNDLE) $(HF_FONTS_STAMP)

$(HF_FONTS_STAMP): $(addprefix $(HF_FONTS)/,package.json package-lock.json build.mjs faces.json) \
  scripts/build_hf_fonts.sh
	scripts/build_hf_fonts.sh
	touch $@

$(VIDEOFLOW_BUNDLE): $(addprefix $(VIDEOFLOW)/,package.json package-lock.json build.mjs entry.js) \
  scripts/build_videoflow.sh
	scripts/build_videoflow.sh

$(TOOLS_STAMP): scripts/install_tools.sh
	GO=$(GO) scripts/install_tools.sh
	touch $@

$(SETUP_STAMP): pyproject.toml clients/python/pyproject.toml scripts/install_system_deps.sh
	scripts/install_system_deps.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ./clients/python -e '.[dev]'
	touch $@

example: setup
	$(VENV)/bin/framefleet render examples/referral/template/referral.html \
	  --params examples/referral/ada.json --out out/

test: lint
	$(PY) -m pytest -q
	$(MAKE) test-clients

# The unit tests only (no farm processes, browser, PostgreSQL, moto or package builds): seconds.
test-fast: setup
	$(PY) -m pytest -q -m "not e2e" -p no:cacheprovider

# The Go and Rust clients (debug builds), each against a live coordinator and agent.
test-clients: test-go test-rust

test-go: setup
	cd clients/go && $(GO) vet ./...
	cd clients/go && $(CLIENT_TEST_ENV) $(GO) test -count=1 ./...

# `cargo package` builds the crate from its packaged files alone (vendored proto included),
# as it builds outside this repository.
test-rust: setup
	cd clients/rust && $(CLIENT_TEST_ENV) $(CARGO) test --locked
	cd clients/rust && $(CARGO) package --locked --allow-dirty --quiet

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy clients/python/examples
	.tools/bin/buf lint
	.tools/bin/helm lint --strict --quiet deploy/helm/framefleet
	.tools/bin/helm lint --strict --quiet deploy/helm/framefleet -f deploy/helm/framefleet/values-spot.yaml

stubs: setup
	PYTHON=$(PY) scripts/generate_stubs.sh

# Re-render the golden templates' key frames (tests/golden/frames/) after an intended change of
# output; look at them before committing (tests/test_golden_renders.py compares by PSNR).
golden: setup
	$(PY) -m tests.golden_renders

bench: setup
	$(PY) bench/pipeline_fps.py
	$(PY) bench/variant_overhead.py
	$(PY) bench/coordinator_throughput.py
	$(PY) bench/s3_upload.py

clean:
	rm -rf $(VENV) .tools out clients/rust/target $(VIDEOFLOW)/node_modules $(VIDEOFLOW)/dist
