# The README's commands. `make demo` installs the development stack (once) and runs the main job on the synthetic
# data set; `make test` runs the suite on it; `make test-official` installs the official OpenMMLab releases into
# .venv-official/ and runs the same suite there.
VENV ?= .venv
OFFICIAL_VENV ?= .venv-official
PYTHON := $(VENV)/bin/python

.PHONY: install install-official demo test test-quick test-official gpu-check

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

test: install
	$(PYTHON) -m pytest -q

test-quick: install
	$(PYTHON) -m pytest -q -m "not slow"

# The full-size FLOPs figures (11 minutes) run on the development stack only; the T-size ones run here too.
test-official: install-official
	$(OFFICIAL_VENV)/bin/python -m pytest -q -m "not full_size"

# On a CUDA machine with the stack installed: the GPU tests, then the benchmarks against Swin, mmpretrain and timm.
gpu-check:
	PYTHON=$(PYTHON) bash tools/gpu_check.sh
