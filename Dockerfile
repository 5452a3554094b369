# Build stage: wheels for everything (gevent and argon2 ship binary wheels; gcc for any that do not).
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /wheels
COPY requirements.txt ./
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    UPLOAD_DIR=/data/uploads \
    INSTANCE_DIR=/data/instance

# libmagic1: content sniffing. mysql:// runs on PyMySQL (pure Python), whose waits yield to the event loop.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmagic1 \
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
