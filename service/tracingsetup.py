"""Turn traces on from the standard ``OTEL_*`` variables, once, at a process's entry point.

Off unless asked for: traces are made when ``OTEL_TRACES_EXPORTER`` names an exporter other than
``none``, or when ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set
(the exporter is then ``otlp``); ``OTEL_SDK_DISABLED=true`` keeps them off whatever else is set.
(The OpenTelemetry specification's default exporter is ``otlp``: ours is off, so that a process
never tries to reach a collector nobody configured.)

Exporters (``OTEL_TRACES_EXPORTER``, comma-separated): ``otlp`` over
``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the
specification's default, or ``grpc``), ``console`` (JSON on stdout, for a look), ``none``.
Everything else the SDK reads from the environment itself: the endpoint, headers, timeout,
compression and certificates of the OTLP exporter, ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES``, the sampler (``OTEL_TRACES_SAMPLER``/``_ARG``) and the batch
processor (``OTEL_BSP_*``). A bad value, or traces asked for without the ``otel`` extra
installed, is a :class:`~service.settings.ConfigError` naming the variable.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from service import tracing
from service.settings import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["configure_tracing", "shutdown_tracing", "tracing_requested"]

_EXPORTERS = ("otlp", "console", "none")
_PROTOCOLS = ("http/protobuf", "grpc")


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    listed = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if not listed:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ["otlp"] if endpoint and endpoint.strip() else []
    names = [name.strip().lower() for name in listed.split(",") if name.strip()]
    for name in names:
        if name not in _EXPORTERS:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER names {name!r}, which wabahooks does not know: use "
                f"{', '.join(_EXPORTERS)} (comma-separated)"
            )
    return [name for name in names if name != "none"]


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    """Return whether the environment asks for traces (see the module docstring)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(_exporter_names(env))


def _protocol(env: Mapping[str, str]) -> str:
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = env.get(variable, "").strip()
        if value:
            if value not in _PROTOCOLS:
                raise ConfigError(
                    f"{variable} is {value!r}: wabahooks exports traces over "
                    f"{' or '.join(_PROTOCOLS)}"
                )
            return value
    return "http/protobuf"


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if _protocol(env) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    return OTLPSpanExporter()


def configure_tracing(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Turn traces on if the environment asks for them (``service_name`` unless
    ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` names the service); return whether
    they are on. Spans still buffered are exported at exit."""
    env = os.environ if env is None else env
    if not tracing_requested(env):
        return False
    names = _exporter_names(env)
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            "OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT ask for traces but OpenTelemetry "
            "is not installed: pip install 'wabahooks[otel]' (or unset them)"
        ) from None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    for name in names:
        try:
            exporter = _exporter(name, env)
        except ImportError as exc:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER's {name} exporter cannot be loaded ({exc.name} is "
                "missing): pip install 'wabahooks[otel]'"
            ) from None
        provider.add_span_processor(BatchSpanProcessor(exporter))
    # Global too, so that a handler's own spans (opentelemetry.trace.get_tracer) join the trace.
    trace.set_tracer_provider(provider)
    tracing.activate(provider)
    global _provider
    _provider = provider
    atexit.register(shutdown_tracing)
    return True


_provider: Any = None


def shutdown_tracing() -> None:
    """Stop tracing and export the spans still buffered (at exit; call it before an
    ``os._exit``, which skips the exit handlers)."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None:
        tracing.deactivate()
        provider.shutdown()
