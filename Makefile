# clue-triage: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test browser-deps lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## demo: install, train the default model if the home has none, triage the sample file,
## and print how to review it in the browser
demo: $(STAMP)
	@$(BIN)/clue-triage models current >/dev/null 2>&1 || $(BIN)/clue-triage train
	@mkdir -p -m 700 var/demo
	$(BIN)/clue-triage triage data/samples/sample_clues.csv -o var/demo/sample_clues.triaged.csv
	@$(BIN)/clue-triage reviewers add demo --name 演示复核人 >/dev/null
	@echo
	@echo "Review these clues in the browser:"
	@echo "  1. start the page:  $(BIN)/clue-triage serve        (http://127.0.0.1:8765, Ctrl-C stops it)"
	@echo "  2. open this one-time sign-in link for reviewer 'demo' (works once, for 30 minutes):"
	@$(BIN)/clue-triage reviewers token demo 2>/dev/null | sed 's/^/     /'
	@echo "     (another link: $(BIN)/clue-triage reviewers token demo)"

## test: the whole suite (pytest exits 5 when it collects no test; make fails on it)
test: $(STAMP) browser-deps
	$(BIN)/python -m pytest

## browser-deps: Debian's chromium and a CJK font for the browser tests, installed when
## missing and we are root with apt-get; otherwise those tests skip and say why
browser-deps:
	@if [ -n "$$CHROMIUM_EXECUTABLE" ] || [ -x /usr/lib/chromium/chromium ] || command -v chromium >/dev/null 2>&1; then \
	  need=""; else need=" chromium"; fi; \
	if ! fc-list :lang=zh 2>/dev/null | grep -q .; then need="$$need fonts-noto-cjk"; fi; \
	if [ -z "$$need" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$need for the browser tests (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null) \
	    || echo "could not install$$need: the browser tests will be skipped or fail on CJK text"; \
	else echo "missing$$need (not root or no apt-get): the browser tests will be skipped"; fi

lint: $(STAMP)
	$(BIN)/ruff check pipeline commands web cli.py tests bench scripts
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/triage_bench.py

clean:
	rm -rf $(VENV) var build *.egg-info
