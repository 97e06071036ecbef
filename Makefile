# The two commands of the README: `make run` and `make test`. Nothing else is needed
# on a fresh machine with python3 (3.11+).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

.PHONY: install run test bench clean

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

run: install
	$(PY) -m flask --app api serve

test: install
	$(PY) -m pytest

bench: install
	$(PY) bench/ledger.py

clean:
	rm -rf $(VENV) .pytest_cache
