"""What the deploy checks share: paths, YAML loading, the schemas, a kustomize renderer."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from workers.cli import metrics as metrics_command

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SCHEMAS = Path(__file__).parent / "schemas"
QUEUES = ("messages", "statuses", "other")

#: The Kubernetes kinds we deploy, each with the vendored strict schema of its exact
#: apiVersion (Kubernetes v1.33, from kubernetes-validate); KEDA's is written by hand.
SCHEMA_FILES = {
    ("v1", "Namespace"): "kubernetes/namespace-v1.json",
    ("v1", "ConfigMap"): "kubernetes/configmap-v1.json",
    ("v1", "Secret"): "kubernetes/secret-v1.json",
    ("v1", "Service"): "kubernetes/service-v1.json",
    ("apps/v1", "Deployment"): "kubernetes/deployment-apps-v1.json",
    ("networking.k8s.io/v1", "Ingress"): "kubernetes/ingress-networking-v1.json",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): (
        "kubernetes/horizontalpodautoscaler-autoscaling-v2.json"
    ),
    ("policy/v1", "PodDisruptionBudget"): "kubernetes/poddisruptionbudget-policy-v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject-v1alpha1.json",
}


def metrics_options() -> set[str]:
    """The options ``wabahooks metrics`` accepts (``--host``, ``--port`` …)."""
    return {option for param in metrics_command.params for option in param.opts}


def metrics_default(name: str) -> Any:
    """The default of one ``wabahooks metrics`` parameter, by its Python name."""
    (param,) = (p for p in metrics_command.params if p.name == name)
    return param.default


class UnknownKind(Exception):
    """A manifest whose apiVersion/kind has no vendored schema: it cannot be validated."""


def load_all(path: Path) -> list[Any]:
    """Return every non-empty YAML document in ``path``."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def _json(name: str) -> Any:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


@cache
def _registry() -> Registry:
    definitions = _json("kubernetes/_definitions.json")
    registry: Registry[Any] = Registry().with_resource(
        definitions["$id"], Resource.from_contents(definitions)
    )
    return registry


@cache
def _k8s_validator(api_version: str, kind: str) -> Draft202012Validator:
    try:
        name = SCHEMA_FILES[(api_version, kind)]
    except KeyError:
        raise UnknownKind(f"no schema for apiVersion {api_version!r} kind {kind!r}") from None
    schema = _json(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())


def k8s_errors(manifest: dict[str, Any]) -> list[ValidationError]:
    """Schema errors of one manifest; UnknownKind if there is no schema for its kind."""
    validator = _k8s_validator(str(manifest.get("apiVersion")), str(manifest.get("kind")))
    return sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))


@cache
def compose_validator() -> Draft7Validator:
    """The Compose specification's own schema (draft-07), vendored from docker compose."""
    schema = _json("compose-spec.json")
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def describe(errors: list[ValidationError]) -> str:
    """One line per error: where, and what."""
    return "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )


# --- kustomize, the subset deploy/k8s/kustomization.yaml uses --------------------------

_SUPPORTED = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "secretGenerator",
    "generatorOptions",
}


def _env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"{path.name}: not KEY=VALUE: {line!r}")
            pairs[key.strip()] = value
    return pairs


def render_kustomization(directory: Path) -> list[dict[str, Any]]:
    """Render ``directory``'s kustomization as ``kustomize build`` would, for our subset.

    Refuses any kustomization field it does not implement, so the renderer cannot
    silently drift from what kustomize does with the file.
    """
    kustomization = load_all(directory / "kustomization.yaml")[0]
    unsupported = set(kustomization) - _SUPPORTED
    if unsupported:
        raise ValueError(f"the test renderer does not implement {sorted(unsupported)}")
    if kustomization.get("generatorOptions", {}) != {"disableNameSuffixHash": True}:
        raise ValueError("the test renderer implements generatorOptions.disableNameSuffixHash only")
    documents: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        documents += copy.deepcopy(load_all(directory / resource))
    for generator in kustomization.get("secretGenerator", []):
        if set(generator) != {"name", "envs"}:
            raise ValueError(f"the test renderer implements name + envs only: {generator}")
        data: dict[str, str] = {}
        for env in generator["envs"]:
            data |= _env_file(directory / env)
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": generator["name"]},
                "type": "Opaque",
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            }
        )
    for doc in documents:
        metadata = doc.setdefault("metadata", {})
        if "namespace" in kustomization and doc["kind"] != "Namespace":
            metadata["namespace"] = kustomization["namespace"]
        for label in kustomization.get("labels", []):
            if set(label) - {"pairs", "includeSelectors"} or label.get("includeSelectors"):
                raise ValueError(f"the test renderer implements plain label pairs only: {label}")
            metadata.setdefault("labels", {}).update(label["pairs"])
    return documents


def by_kind(documents: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    """The documents of one kind."""
    return (doc for doc in documents if doc["kind"] == kind)


#: The ConfigMap holding the workers' wabahooks.toml (deploy/k8s/handlers.yaml).
HANDLERS = "wabahooks-handlers"


def handler_check(config: Path, app_dir: Path) -> tuple[str, str]:
    """The handler check's level and line for a TOML, as the workers would load it (in a
    process of its own: it imports the modules)."""
    import json
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "WABAHOOKS_CONFIG": str(config)}
    env["WABAHOOKS_APP_DIR"] = str(app_dir)
    result = subprocess.run(
        [sys.executable, "-m", "workers.handlercheck"],
        env=env,
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    info = json.loads(result.stdout)
    return info["level"], info["detail"]
