# One command each; both do their own set-up (scripts/setup.sh makes .venv on first use).
VENV ?= .venv
PY := $(VENV)/bin/python
export PLOTLY_RENDERER ?= plotly_mimetype+notebook

.PHONY: setup series test lint bench clean present

setup:
	@LABKIT_VENV=$(VENV) bash scripts/setup.sh

# The main job: every notebook on the embedded corpus, headless, into runs/series/.
series: setup
	$(PY) -m labkit.series --out runs/series

# Notebook 06's demos as a web app (Voila) at http://127.0.0.1:8866/, until Ctrl-C.
present: setup
	$(PY) -m labkit present

# The test suite: unit tests (tests/test_browser.py drives Debian's chromium when installed), then
# every notebook under nbval with its quick parameters.
test: setup
	$(VENV)/bin/ruff check labkit tests bench
	$(VENV)/bin/ruff format --check labkit tests bench
	$(VENV)/bin/pytest -q tests notebooks --nbval-lax --nbval-current-env \
		--nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check --fix labkit tests bench
	$(VENV)/bin/ruff format labkit tests bench

bench: setup
	$(PY) -m bench.all

clean:
	rm -rf runs .pytest_cache
