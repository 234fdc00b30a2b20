# runbookd: migrations, then uvicorn. Configure with RUNBOOKD_* environment variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/runbookd

RUN useradd --system --uid 10001 --home-dir /srv/runbookd runbookd
COPY pyproject.toml README.md alembic.ini alert_mappings.yaml ./
COPY app ./app
COPY migrations ./migrations
COPY remediations ./remediations
RUN pip install -e . && mkdir -p /srv/runbookd/var && chown -R runbookd /srv/runbookd/var

USER runbookd
ENV RUNBOOKD_DATABASE_URL=sqlite+aiosqlite:////srv/runbookd/var/runbookd.db
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/-/healthy', timeout=2)" || exit 1
CMD ["sh", "-c", "runbookd db upgrade && exec runbookd serve --host 0.0.0.0 --port 8080"]
