# Two commands do all set-up on a fresh machine (only Python needed):
#   make demo   runs the main job (Chemical: STL, affinity, sweep, ETAP, selection, report)
#   make test   runs the test suite
# Both create .venv on first use. torch==2.13.0 is installed before the package so pip takes the
# local CPU build instead of pulling a multi-GB CUDA build.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Data: $TASKREL_DATA when set; else ../shared/external_data when that folder exists; else taskrel's
# own default, the user cache ~/.cache/taskrel (missing files are downloaded from their public sources).
SHARED_DATA := $(abspath ../shared/external_data)
ifeq ($(origin TASKREL_DATA),undefined)
ifneq ($(wildcard $(SHARED_DATA)/.),)
export TASKREL_DATA := $(SHARED_DATA)
endif
endif

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,ray]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/taskrel pipeline --dataset chemical --train-groups 10 --max-groups 3 --seeds 2 --workers 2 --out demo-out

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -n auto --dist worksteal

clean:
	rm -rf $(VENV) demo-out
