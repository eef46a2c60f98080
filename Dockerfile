# skysort service image: the package, its dependencies and the bundled default models.
# Build: docker build -t skysort .   (or: podman build -t skysort .)
# Run:   docker run --rm -p 3000:3000 skysort
# BASE_IMAGE is an argument so that a locally imported Debian image can stand in where
# no registry is reachable (see README, "Container").
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    XLA_PYTHON_CLIENT_PREALLOCATE=false \
    SKYSORT_BUNDLES=/app/bundles

WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY training ./training
COPY serving ./serving
COPY skysort ./skysort
COPY survey ./survey
COPY bundles ./bundles
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --quiet . \
    && useradd --create-home --uid 10001 skysort
ENV PATH=/opt/venv/bin:$PATH
USER skysort
EXPOSE 3000
CMD ["bentoml", "serve", "serving.service:Skysort", "--host", "0.0.0.0", "--port", "3000"]
