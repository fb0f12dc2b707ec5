# Set-up and everyday commands (each installs into .venv first when needed):
#   make demo       train a small network on built-in data, its surface under mpirun -n 2, and its pictures
#   make test       the whole test suite (what CI runs)
#   make test-fast  the tests that start no MPI job, Slurm or training run: under a minute
#   make images     the README's pictures: the demo's, copied into docs/images
#   make gallery    docs/figures.md's pictures: every figure kind (2D from small sample files, then gallery-3d), in docs/images/gallery
#   make docs       regenerate docs/cli.md from the commands' parsers
#   make gallery-3d the trajectory, 3D, VTK/ParaView and weight pictures of docs/figures.md (docs/images/gallery)
# A CPU-only machine, or one with its own torch: see "Install" in README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUTPUT := demo_output
IMAGES := demo_surface_train_loss_2dcontour.png demo_surface_train_loss_3dsurface.png demo_surface_vtk.png

.PHONY: install demo test test-fast images gallery gallery-3d docs clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -e .
	touch $@

demo: install
	$(PY) -m mpi_landscape.demo --workdir $(DEMO_OUTPUT)

test: install
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

images: demo
	cp $(addprefix $(DEMO_OUTPUT)/,$(IMAGES)) docs/images/

gallery: install gallery-3d
	$(PY) tests/gallery.py docs/images/gallery

docs: install
	$(PY) -m mpi_landscape.cli_reference docs/cli.md

gallery-3d: install
	$(PY) docs/gallery_3d.py --workdir gallery_output

clean:
	rm -rf $(VENV) $(DEMO_OUTPUT) gallery_output .pytest_cache
