# skysort service image: two stages, so that compilers and pip caches stay out of it.
#   build:  docker build -t skysort .          (or: podman build -t skysort .)
#   run:    docker run --rm -p 3000:3000 skysort
#   GPU:    docker run --rm --gpus all -p 3000:3000 skysort   (with a CUDA jaxlib installed
#           in the builder; XLA_PYTHON_CLIENT_PREALLOCATE=false leaves GPU memory to others)
# BASE_IMAGE is an argument so that a locally imported Debian image can stand in where no
# registry is reachable (scripts/container_smoke.sh makes one). WHEELS=1 installs from
# build/wheels (built on the host with `pip wheel . -w build/wheels`) without network.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ARG WHEELS=0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models ./models
COPY training ./training
COPY serving ./serving
COPY skysort ./skysort
COPY survey ./survey
# README.md makes the pattern match when there is no wheelhouse
COPY README.md build/wheel[s] ./wheels/
RUN python3 -m venv /opt/venv \
    && if [ "$WHEELS" = 1 ]; then \
         /opt/venv/bin/pip install --quiet --no-index --find-links ./wheels skysort ; \
       else \
         /opt/venv/bin/pip install --quiet . ; \
       fi \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    XLA_PYTHON_CLIENT_PREALLOCATE=false \
    SKYSORT_BUNDLES=/app/bundles \
    BENTOML_HOME=/tmp/bentoml
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin skysort
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY bundles ./bundles
USER skysort
EXPOSE 3000
# ready only once every model is loaded and warm (GET /readyz)
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:3000/readyz', timeout=4)"]
CMD ["bentoml", "serve", "serving.service:Skysort", "--host", "0.0.0.0", "--port", "3000"]
