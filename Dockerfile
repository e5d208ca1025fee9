# One image for the receiver (`serve`) and, later, the workers (`worker`).
# Build stage: wheels only; the final stage has no compiler and runs as non-root.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY workers ./workers
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home wabahooks
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    WABAHOOKS_LOG_FORMAT=json
USER wabahooks
EXPOSE 8000
# uvicorn finishes in-flight requests on SIGTERM (graceful shutdown, 10 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["wabahooks"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
