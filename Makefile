# The two commands of the README: `make run` and `make test`. Nothing else is needed
# on a fresh machine with python3 (3.11+).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

.PHONY: install run test bench clean browser doctor

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

run: install
	$(PY) -m flask --app api serve

test: install browser
	$(PY) -m pytest

# The browser tests drive Debian's chromium (Playwright never downloads a browser here).
# Installed when missing; if that fails, those tests are skipped with the reason.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-liberation; \
	} || echo "chromium could not be installed: the browser tests will be skipped"

# What a production install still lacks (settings, database, scheduler): deploy/, README.
doctor: install
	$(PY) -m flask --app api doctor

bench: install
	$(PY) bench/ledger.py

clean:
	rm -rf $(VENV) .pytest_cache
