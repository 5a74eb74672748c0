# clue-triage: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## demo: install, train the default model if the home has none, triage the sample file
demo: $(STAMP)
	@$(BIN)/clue-triage models current >/dev/null 2>&1 || $(BIN)/clue-triage train
	$(BIN)/clue-triage triage data/samples/sample_clues.csv -o var/demo/sample_clues.triaged.csv

## test: the whole suite (pytest exits 5 when it collects no test; make fails on it)
test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check pipeline commands web cli.py tests bench scripts
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/triage_bench.py

clean:
	rm -rf $(VENV) var build *.egg-info
