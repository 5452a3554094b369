# make run: serve on :3000 (SQLite under instance/ unless DATABASE_URL says otherwise)
# make test: the whole suite on SQLite and MySQL (MYSQL_TEST_URL; REQUIRE_MYSQL=1 makes a missing MySQL fail)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ALEMBIC := $(VENV)/bin/alembic -c migrations/alembic.ini

.PHONY: run test migrate venv clean

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

clean:
	rm -rf $(VENV) .pytest_cache
