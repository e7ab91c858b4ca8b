# The README's commands. `make demo` installs (once) and runs the main job on the synthetic data set.
VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: install demo test

install: $(VENV)/.installed

$(VENV)/.installed: tools/install.sh requirements.txt requirements-test.txt setup.py
	bash tools/install.sh
	touch $@

demo: install
	bash tools/run_demo.sh

test: install
	$(PYTHON) -m pytest -q tests
