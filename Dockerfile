# Build stage: wheels for everything, mysqlclient compiled against the MariaDB client headers.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc pkg-config libmariadb-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /wheels
COPY requirements.txt requirements-mysqlclient.txt ./
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt -r requirements-mysqlclient.txt

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    UPLOAD_DIR=/data/uploads \
    INSTANCE_DIR=/data/instance

# libmagic1: content sniffing; libmariadb3: the client library of mysqlclient, which a mysql:// DATABASE_URL uses.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmagic1 libmariadb3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 app \
 && mkdir -p /data/uploads /data/instance \
 && chown -R app:app /data

WORKDIR /srv
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels /wheels/*.whl && rm -rf /wheels
COPY --chown=app:app . .

USER app
EXPOSE 3000
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=2)"
# Migrations first (idempotent), then gunicorn replaces the shell so it receives signals.
CMD ["sh", "-c", "alembic -c migrations/alembic.ini upgrade head && exec gunicorn -c gunicorn.conf.py wsgi:app"]
