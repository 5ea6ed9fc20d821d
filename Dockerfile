# syntax=docker/dockerfile:1
# Tidemark container: slim Python, non-root, config mounted at /etc/tidemark/config.yaml.
#   docker build -t tidemark .
#   docker run -v $PWD/config:/etc/tidemark:ro -p 9308:9308 tidemark

# --- build a wheel (no compilers needed: confluent-kafka and fastavro ship wheels) ---
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime ---
FROM python:3.11-slim
LABEL org.opencontainers.image.title="tidemark" \
      org.opencontainers.image.description="Freshness, completeness and contract monitor for Kafka data products" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TIDEMARK_CONFIG=/etc/tidemark/config.yaml
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && groupadd --system --gid 10001 tidemark \
    && useradd --system --uid 10001 --gid tidemark --no-create-home --shell /usr/sbin/nologin tidemark
USER 10001:10001
EXPOSE 9308
# slim has no curl: ask /healthz (the poll loop is alive) with the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9308/healthz', timeout=4).status == 200 else 1)"]
# SIGTERM (docker stop) makes Tidemark finish its batch, commit and close the consumer.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tidemark"]
CMD ["run", "--config", "/etc/tidemark/config.yaml"]
