# One image for the receiver (`wabahooks serve`) and the workers (`wabahooks worker --queue …`).
#   docker build -t wabahooks .
#   docker run wabahooks                            # the receiver on :8000 (CMD below)
#   docker run wabahooks worker --queue messages    # a worker (disable the HEALTHCHECK for it)
ARG PYTHON_IMAGE=python:3.11-slim

# Build stage: a venv with the project and its dependencies. Every dependency ships
# manylinux wheels, so no compiler is installed even here; if one ever needs one, it
# goes into this stage only.
FROM ${PYTHON_IMAGE} AS build
# Optional extras, e.g. --build-arg EXTRAS=otel for OpenTelemetry traces (README "Traces").
ARG EXTRAS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first, in their own layer: a code change then reuses it.
COPY pyproject.toml README.md ./
RUN mkdir service workers \
 && touch service/__init__.py workers/__init__.py \
 && /opt/venv/bin/pip install ".${EXTRAS:+[$EXTRAS]}" \
 && /opt/venv/bin/pip uninstall --yes wabahooks
COPY service ./service
COPY workers ./workers
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/wabahooks --help > /dev/null

# Final stage: the base image plus the venv; no pip cache, no build tools, non-root.
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 wabahooks \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin wabahooks
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WABAHOOKS_LOG_FORMAT=json
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
# Exec form everywhere: the Python process is PID 1 and receives SIGTERM itself.
# uvicorn then stops accepting and finishes in-flight requests (10 s); an RQ worker
# does a warm shutdown, finishing its current job (give it the job timeout, 180 s).
STOPSIGNAL SIGTERM
# For the receiver only; the worker services disable it (compose) or ignore it (Kubernetes).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["wabahooks"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
