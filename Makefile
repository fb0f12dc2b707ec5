# Two commands do all the set-up on a fresh machine:
#   make demo   install into .venv, train a small network and compute its surface under mpirun -n 2
#   make test   install into .venv and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test docs clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -e .
	touch $@

demo: install
	$(PY) -m mpi_landscape.demo

test: install
	$(PY) -m pytest -q tests

docs: install
	$(PY) -m mpi_landscape.cli_reference docs/cli.md

clean:
	rm -rf $(VENV) demo_output .pytest_cache
