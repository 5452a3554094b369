# make run: serve on :3000 (SQLite under instance/ unless DATABASE_URL says otherwise)
# make test: the whole suite on SQLite and MySQL (MYSQL_TEST_URL; REQUIRE_MYSQL=1 makes a missing MySQL fail)
#   and the browser tests (Debian's chromium + chromium-driver; REQUIRE_BROWSER=1 makes a missing browser fail)
#   and the scale-out tests (Redis at REDIS_TEST_URL, default redis://127.0.0.1:6379/15; REQUIRE_REDIS=1 makes
#   a missing Redis fail); files tests run on local disk and on S3 (moto's server, started by the tests)
# make web: the web client in web/ on :8080 (WEB_PORT), another origin than the API on :3000
# make fuzz: only the schemathesis run of `make test` (MySQL; FUZZ_MAX_EXAMPLES, FUZZ_SEED), report printed
# make docs-check: only the /docs render check in headless Chromium, which must be installed here
# make bench-compare ANCHOR_URL=http://127.0.0.1:PORT: this service next to another server with the same routes
#   (e.g. the Express original), rounds interleaved; see bench/README.md
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ALEMBIC := $(VENV)/bin/alembic -c migrations/alembic.ini
WEB_PORT ?= 8080
WEB_HOST ?= 127.0.0.1

.PHONY: run test migrate venv clean web

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

migrate: venv
	$(ALEMBIC) upgrade head

run: migrate
	$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: fuzz docs-check
fuzz: venv
	$(PY) -m pytest -s tests/fuzz $(PYTEST_ARGS)

docs-check: venv
	REQUIRE_BROWSER=1 $(PY) -m pytest tests/test_docs_render.py $(PYTEST_ARGS)

web:
	@echo "Web client: http://localhost:$(WEB_PORT)/  (API address: http://localhost:3000, or ?api=URL)"
	$(PYTHON) -m http.server $(WEB_PORT) --bind $(WEB_HOST) --directory web

clean:
	rm -rf $(VENV) .pytest_cache

.PHONY: bench
bench: venv
	$(PY) bench/run.py

.PHONY: bench-compare
bench-compare: venv
	@test -n "$(ANCHOR_URL)" || { echo "set ANCHOR_URL, e.g. make bench-compare ANCHOR_URL=http://127.0.0.1:3100"; exit 2; }
	$(PY) bench/compare.py
