# framefleet: `make example` renders the example, `make test` runs the suite. Given only git and
# make on Debian, both set up what they need first, and no more:
#   make example  Python, Chromium and fonts (scripts/install_system_deps.sh --example), then
#                 .venv from requirements.lock
#   make setup    that, plus the test suite's packages (PostgreSQL, podman), the toolchains and
#                 pinned tools in .tools/ (scripts/install_tools.sh: Go, Rust, protoc, buf,
#                 helm, grpcurl) and VideoFlow's bundle; `make test` runs it
# `make lock` refreshes requirements.lock after a pyproject.toml changes; `make docs` builds the
# docs site (docs/, mkdocs.yml) into site/.
VENV := .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.setup-done
# mkdocs-material prints a banner about its successor on every build; strict mode is in mkdocs.yml.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs
TEST_DEPS_STAMP := .tools/.system-deps-done
TOOLS_STAMP := .tools/.setup-done
# The Go that scripts/install_tools.sh put in .tools/go when none new enough was here.
GO ?= $(firstword $(wildcard $(CURDIR)/.tools/go/bin/go) $(shell command -v go) /usr/local/go/bin/go)
CARGO ?= $(shell command -v cargo || echo $(HOME)/.cargo/bin/cargo)
# The Go and Rust interop tests start a real coordinator and agent with this interpreter.
CLIENT_TEST_ENV := FRAMEFLEET_PYTHON=$(abspath $(PY))
# VideoFlow's browser runtime for VideoJSON jobs, bundled from npm (not committed).
VIDEOFLOW := framefleet/agent/videoflow
VIDEOFLOW_BUNDLE := $(VIDEOFLOW)/dist/runtime.js
# The @fontsource faces HyperFrames compositions resolve their fonts to (not committed).
HF_FONTS := framefleet/agent/hf_fonts
HF_FONTS_STAMP := $(HF_FONTS)/dist/.built

# uv resolves requirements.in into requirements.lock (exact versions, hashes); pinned here and
# installed into a venv of its own, so a stale lock never stops `make lock` from running.
UV_VERSION := 0.13.10
UV := .tools/uv/bin/uv
LOCK_FLAGS := --generate-hashes --universal --fork-strategy fewest --python-version 3.11 \
  --no-emit-package framefleet --no-emit-package framefleet-farm --quiet \
  --custom-compile-command "make lock"

.PHONY: setup example test test-fast test-kube test-clients test-go test-rust lint docs lock lock-check stubs golden bench clean

setup: $(SETUP_STAMP) $(TEST_DEPS_STAMP) $(TOOLS_STAMP) $(VIDEOFLOW_BUNDLE) $(HF_FONTS_STAMP)

$(HF_FONTS_STAMP): $(addprefix $(HF_FONTS)/,package.json package-lock.json build.mjs faces.json) \
  scripts/build_npm.sh
	scripts/build_npm.sh $(HF_FONTS)
	touch $@

$(VIDEOFLOW_BUNDLE): $(addprefix $(VIDEOFLOW)/,package.json package-lock.json build.mjs entry.js) \
  scripts/build_npm.sh
	scripts/build_npm.sh $(VIDEOFLOW)

$(TOOLS_STAMP): scripts/install_tools.sh clients/go/go.mod clients/rust/Cargo.toml
	scripts/install_tools.sh
	touch $@

$(TEST_DEPS_STAMP): scripts/install_system_deps.sh
	scripts/install_system_deps.sh
	mkdir -p $(dir $@) && touch $@

# Everything from the lock, hash-checked; then the two local packages on top with --no-deps
# (and the lock's setuptools as their build backend). Both share the `framefleet` package
# (the SDK's clients/python/framefleet is a link to ./framefleet): the farm's editable install
# puts the repository on sys.path (compat mode), so `framefleet.agent` and the SDK's modules
# load from the one ./framefleet. `pip check` catches a pyproject.toml
# dependency the lock lacks.
$(SETUP_STAMP): requirements.lock pyproject.toml clients/python/pyproject.toml \
  scripts/install_system_deps.sh
	scripts/install_system_deps.sh --example
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e ./clients/python
	$(PY) -m pip install -q --no-deps --no-build-isolation --config-settings editable_mode=compat \
	  -e '.[dev]'
	$(PY) -m pip check >/dev/null || { $(PY) -m pip check; \
	  echo "setup: requirements.lock does not satisfy the pyproject.toml files: run make lock" >&2; \
	  exit 1; }
	touch $@

$(UV):
	scripts/install_system_deps.sh --example
	python3 -m venv .tools/uv
	.tools/uv/bin/pip install -q uv==$(UV_VERSION)

# Re-resolve requirements.in (both pyproject.toml files), keeping every pin the lock already has
# that still fits (uv prefers the versions in its output file): run after editing dependencies.
lock: $(UV)
	$(UV) pip compile requirements.in $(LOCK_FLAGS) -o requirements.lock

# Whether requirements.lock is what `make lock` would write (CI runs it first).
lock-check: $(UV)
	cp requirements.lock .tools/requirements.lock.check
	$(UV) pip compile requirements.in $(LOCK_FLAGS) -o .tools/requirements.lock.check
	diff -q requirements.lock .tools/requirements.lock.check >/dev/null || { \
	  diff -u requirements.lock .tools/requirements.lock.check | head -40; \
	  echo "requirements.lock is out of date: run make lock and commit it" >&2; exit 1; }

# Only what one local render needs: no Go, Rust, PostgreSQL, podman or proto tools.
example: $(SETUP_STAMP)
	$(VENV)/bin/framefleet render examples/referral/template/referral.html \
	  --params examples/referral/ada.json --out out/

test: lint
	GO=$(GO) scripts/install_kube.sh
	$(PY) -m pytest -q
	$(MAKE) test-clients

# The unit tests only (no farm processes, browser, PostgreSQL, moto or package builds): seconds.
test-fast: setup
	$(PY) -m pytest -q -m "not e2e" -p no:cacheprovider

# The chart against a real API server (tests/test_kube.py). The first run builds kube-apiserver
# into ~/.cache/framefleet/kube (scripts/install_kube.sh: 6 to 17 minutes on 2 cores, once per
# machine); `make test` builds it too.
test-kube: setup
	scripts/install_kube.sh
	$(PY) -m pytest -q -k kube

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
	$(MKDOCS) build --quiet --site-dir .tools/site

# The docs site, strictly (mkdocs.yml: a warning, a broken link or anchor fails), offline, in
# seconds; its reference pages are generated from the code by docs/hooks.py.
docs: $(SETUP_STAMP)
	$(MKDOCS) build

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
	rm -rf $(VENV) .tools out site clients/rust/target $(VIDEOFLOW)/node_modules $(VIDEOFLOW)/dist
