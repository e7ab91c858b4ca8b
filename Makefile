# The README's commands. `make demo` installs the development stack (once) and runs the main job on the synthetic
# data set; `make test` runs the suite on it; `make test-official` installs the official OpenMMLab releases into
# .venv-official/ and runs the same suite there.
VENV ?= .venv
OFFICIAL_VENV ?= .venv-official
PYTHON := $(VENV)/bin/python

.PHONY: install install-official demo lint test test-quick test-largest test-official gpu-check gpu-memory-check

install: $(VENV)/.installed
install-official: $(OFFICIAL_VENV)/.installed

$(VENV)/.installed: tools/install.sh requirements/dev.txt requirements.txt setup.py
	STACK=dev VENV=$(VENV) bash tools/install.sh
	touch $@

$(OFFICIAL_VENV)/.installed: tools/install.sh requirements/official.txt requirements.txt setup.py
	STACK=official VENV=$(OFFICIAL_VENV) bash tools/install.sh
	touch $@

demo: install
	PYTHON=$(PYTHON) bash tools/run_demo.sh

# ruff (ruff.toml): pycodestyle, pyflakes and import order at 120 columns; CI runs it before the tests.
lint: install
	$(VENV)/bin/ruff check .

test: install
	$(PYTHON) -m pytest -q -m "not largest"

test-quick: install
	$(PYTHON) -m pytest -q -m "not slow"

# The published FLOPs of the sizes `make test` does not count at full size, S..XL (~20 minutes; `make test` checks
# their parameters).
test-largest: install
	$(PYTHON) -m pytest -q -m largest

# The published FLOPs counted at full size run on the development stack only
# (tests/tools/analysis_tools/test_get_flops.py counts Mask R-CNN T here too).
test-official: install-official
	$(OFFICIAL_VENV)/bin/python -m pytest -q -m "not full_size"

# On a CUDA machine with the stack installed: the GPU tests, then the benchmarks against Swin, mmpretrain and timm.
gpu-check:
	PYTHON=$(PYTHON) bash tools/gpu_check.sh

# On a CUDA machine: the GPU memory runs that `benchmark_memory.py --estimate --against` compares its estimates with.
gpu-memory-check:
	CHECK=memory PYTHON=$(PYTHON) bash tools/gpu_check.sh work_dirs/gpu_memory_check
