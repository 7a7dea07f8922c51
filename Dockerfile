# The API service against an external Redis (set REDIS_URL). Build: docker build -t offerwise .

# The snippet is built from its source (esbuild, pinned by the lock file), never committed.
FROM node:20-slim AS snippet
WORKDIR /snippet
COPY js-snippet/package.json js-snippet/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY js-snippet/src ./src
COPY js-snippet/scripts ./scripts
RUN node scripts/build.js

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    OFFERWISE_DATA_DIR=/data

RUN useradd --create-home --uid 10001 offerwise && mkdir -p /data && chown offerwise /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY app ./app
COPY store ./store
COPY clickstream ./clickstream
COPY enrichment ./enrichment
COPY models ./models
COPY campaigns ./campaigns
COPY --from=snippet /snippet/dist ./js-snippet/dist
RUN pip install --no-compile -e '.[distributed]'

USER offerwise
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
# REDIS_URL must point at the shared Redis; OFFERWISE_STAFF_TOKEN enables the staff API.
CMD ["offerwise", "serve", "--host", "0.0.0.0", "--port", "8000"]
