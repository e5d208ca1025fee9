"""deploy/k8s: the rendered kustomization validates against Kubernetes' and KEDA's schemas.

Every rendered document is validated against the schema of its exact apiVersion and
kind: Kubernetes v1.33's strict schemas (vendored from kubernetes-validate 1.37.0;
unknown fields are errors) and, for KEDA's ScaledObject, a strict schema WRITTEN BY
HAND from KEDA's documented spec (no package reachable here ships the CRD's own
openAPIV3Schema as JSON; see tests/deploy/schemas/keda-scaledobject-v1alpha1.json).
A kind without a schema fails the test instead of being skipped.

The kustomization is rendered by the small renderer in support.py; where kubectl is
installed, its `kubectl kustomize` output must be the same documents.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from service.jobs import QUEUE_NAMES
from service.settings import DEFAULT_QUEUE_PREFIX
from tests.deploy.support import (
    HANDLERS,
    K8S,
    QUEUES,
    SCHEMA_FILES,
    UnknownKind,
    _env_file,
    by_kind,
    describe,
    handler_check,
    k8s_errors,
    metrics_default,
    metrics_options,
    render_kustomization,
)
from workers.engine import DEFAULT_GRACE
from workers.metrics import MULTIPROC_ENV

CONFIG = "wabahooks-config"


@pytest.fixture(scope="module")
def kustomize_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/k8s with secrets.env made from secrets.env.example."""
    directory = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, directory, ignore=shutil.ignore_patterns("secrets.env"))
    shutil.copy(directory / "secrets.env.example", directory / "secrets.env")
    return directory


@pytest.fixture(scope="module")
def rendered(kustomize_dir: Path) -> list[dict[str, Any]]:
    return render_kustomization(kustomize_dir)


def _key(doc: dict[str, Any]) -> tuple[str, str, str]:
    return (doc["apiVersion"], doc["kind"], doc["metadata"]["name"])


def test_every_rendered_document_validates_against_the_schema_of_its_kind(
    rendered: list[dict[str, Any]],
) -> None:
    kinds = {(doc["apiVersion"], doc["kind"]) for doc in rendered}
    assert kinds == set(SCHEMA_FILES), "each vendored schema is used, each kind has one"
    for doc in rendered:
        errors = k8s_errors(doc)
        assert not errors, f"{_key(doc)}:\n{describe(errors)}"


def test_the_renderer_agrees_with_kubectl_kustomize(
    kustomize_dir: Path, rendered: list[dict[str, Any]]
) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the test renderer is not cross-checked")
    output = subprocess.run(
        [kubectl, "kustomize", str(kustomize_dir)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    theirs = {_key(doc): doc for doc in yaml.safe_load_all(output) if doc}
    ours = {_key(doc): doc for doc in rendered}
    assert theirs == ours


def test_an_unknown_kind_fails_instead_of_passing() -> None:
    with pytest.raises(UnknownKind):
        k8s_errors({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob", "metadata": {}})
    with pytest.raises(UnknownKind):
        # A known kind under an apiVersion we have no schema for is unknown too.
        k8s_errors({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler"})


@pytest.mark.parametrize(
    ("kind", "path", "value", "complaint"),
    [
        ("Deployment", ["spec", "template", "spec", "containers", 0, "imagePullPolcy"], "Always",
         "imagePullPolcy"),
        ("Deployment", ["spec", "template", "spec", "terminationGracePeriodSeconds"], "210s",
         "'210s' is not of type"),
        ("Ingress", ["spec", "rules", 0, "http", "paths", 0, "pathType"], None, "pathType"),
        ("ScaledObject", ["spec", "maxReplicas"], 10, "maxReplicas"),
        ("ScaledObject", ["spec", "triggers", 0, "metadata", "listname"], "x", "listname"),
        ("ScaledObject", ["spec", "triggers", 0, "metadata", "listLength"], 20, "20 is not of"),
    ],
)  # fmt: skip
def test_a_broken_manifest_is_rejected(
    rendered: list[dict[str, Any]], kind: str, path: list[Any], value: Any, complaint: str
) -> None:
    doc = copy.deepcopy(next(by_kind(rendered, kind)))
    *parents, last = path
    target = doc
    for step in parents:
        target = target[step]
    if value is None:
        del target[last]
    else:
        target[last] = value
    assert complaint in describe(k8s_errors(doc))


def test_one_worker_deployment_and_scaled_object_per_queue(rendered: list[dict[str, Any]]) -> None:
    assert set(QUEUE_NAMES.values()) == set(QUEUES)
    deployments = {d["metadata"]["name"]: d for d in by_kind(rendered, "Deployment")}
    scaled = {s["metadata"]["name"]: s for s in by_kind(rendered, "ScaledObject")}
    assert set(scaled) == {f"wabahooks-worker-{queue}" for queue in QUEUES}
    for queue in QUEUES:
        name = f"wabahooks-worker-{queue}"
        pod = deployments[name]["spec"]["template"]["spec"]
        assert pod["containers"][0]["args"] == ["worker", "--queue", queue]
        # A warm stop takes up to WABAHOOKS_GRACE: the pod's grace period must cover it.
        assert pod["terminationGracePeriodSeconds"] > DEFAULT_GRACE
        assert "replicas" not in deployments[name]["spec"], "KEDA owns the replica count"
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert spec["minReplicaCount"] >= 1
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["listName"] == f"rq:queue:{DEFAULT_QUEUE_PREFIX}{queue}"


def test_kedas_redis_address_is_the_server_in_redis_url(rendered: list[dict[str, Any]]) -> None:
    (config,) = [c for c in by_kind(rendered, "ConfigMap") if c["metadata"]["name"] == CONFIG]
    url = urlsplit(_env_file(K8S / "secrets.env.example")["REDIS_URL"])
    assert config["data"]["REDIS_ADDRESS"] == f"{url.hostname}:{url.port or 6379}"
    for scaled in by_kind(rendered, "ScaledObject"):
        metadata = scaled["spec"]["triggers"][0]["metadata"]
        assert metadata["addressFromEnv"] == "REDIS_ADDRESS"
        assert metadata["databaseIndex"] == (url.path.strip("/") or "0")


def test_the_receiver_is_probed_autoscaled_and_protected(rendered: list[dict[str, Any]]) -> None:
    deployment = next(d for d in by_kind(rendered, "Deployment") if d["metadata"]["name"] ==
                      "wabahooks-receiver")  # fmt: skip
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "serve"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    selector = deployment["spec"]["selector"]["matchLabels"]
    (hpa,) = by_kind(rendered, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "wabahooks-receiver"
    assert hpa["spec"]["minReplicas"] >= 2
    (pdb,) = by_kind(rendered, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    (ingress,) = by_kind(rendered, "Ingress")
    assert ingress["spec"]["tls"], "the portal delivers only to HTTPS"
    backends = [
        p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]
    ]
    assert backends == ["wabahooks-receiver"], "only the receiver is public"


def test_every_pod_runs_non_root_with_limits(rendered: list[dict[str, Any]]) -> None:
    for deployment in by_kind(rendered, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) <= set(resources["limits"])


def test_workloads_read_the_secret_and_config_that_are_rendered(
    rendered: list[dict[str, Any]],
) -> None:
    names = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    secret = next(by_kind(rendered, "Secret"))
    for deployment in by_kind(rendered, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert ("Secret", source["secretRef"]["name"]) in names
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in names
            for env in container.get("env", []):
                if "value" in env:
                    continue
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret["metadata"]["name"]
                assert ref["key"] in secret["data"]


def _pod(rendered: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (deployment,) = (d for d in by_kind(rendered, "Deployment") if d["metadata"]["name"] == name)
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {env["name"]: env.get("value", env.get("valueFrom")) for env in container["env"]}


def _mounts(container: dict[str, Any]) -> dict[str, str]:
    return {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}


def test_every_worker_pod_has_a_metrics_sidecar_sharing_an_in_memory_directory(
    rendered: list[dict[str, Any]],
) -> None:
    for queue in QUEUES:
        template = _pod(rendered, f"wabahooks-worker-{queue}")
        pod = template["spec"]
        worker, sidecar = pod["containers"]  # one worker per pod: its PID 1 files are its own
        assert worker["args"][0] == "worker" and sidecar["name"] == "metrics"
        assert sidecar["image"] == worker["image"]
        args = sidecar["args"]
        assert args[0] == "metrics" and {a for a in args if a[:2] == "--"} <= metrics_options()
        port = int(args[args.index("--port") + 1])
        # No --host: the default listens on the pod's address, where Prometheus scrapes.
        assert "--host" not in args and metrics_default("host") == "0.0.0.0"
        assert sidecar["ports"] == [{"name": "metrics", "containerPort": port}]
        assert sidecar["readinessProbe"]["httpGet"]["port"] == "metrics"
        directory = _env(worker)[MULTIPROC_ENV]
        assert _env(sidecar)[MULTIPROC_ENV] == directory
        assert _env(sidecar)["REDIS_URL"] == {
            "secretKeyRef": {"name": "wabahooks-secrets", "key": "REDIS_URL"}
        }
        assert all("secretRef" not in source for source in sidecar["envFrom"]), "no portal key"
        volume = _mounts(worker)[directory]
        assert _mounts(sidecar)[directory] == volume
        (spec,) = (v for v in pod["volumes"] if v["name"] == volume)
        assert spec["emptyDir"]["medium"] == "Memory", "emptied whenever the pod starts"
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_the_receiver_pods_are_scraped_on_their_own_port_and_count_nothing_in_files(
    rendered: list[dict[str, Any]],
) -> None:
    template = _pod(rendered, "wabahooks-receiver")
    (container,) = template["spec"]["containers"]
    (port,) = container["ports"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    # Its files would be added to the workers' sums (README "Metrics").
    assert MULTIPROC_ENV not in {env["name"] for env in container.get("env", [])}
    (config,) = [c for c in by_kind(rendered, "ConfigMap") if c["metadata"]["name"] == CONFIG]
    assert MULTIPROC_ENV not in config["data"], "the ConfigMap reaches the receiver too"


def test_workers_get_the_handler_toml_from_a_configmap_and_the_code_from_the_image(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    (handlers,) = [c for c in by_kind(rendered, "ConfigMap") if c["metadata"]["name"] == HANDLERS]
    for queue in QUEUES:
        pod = _pod(rendered, f"wabahooks-worker-{queue}")["spec"]
        worker = pod["containers"][0]
        env = _env(worker)
        config = Path(env["WABAHOOKS_CONFIG"])
        volume = _mounts(worker)[str(config.parent)]
        (spec,) = (v for v in pod["volumes"] if v["name"] == volume)
        assert spec["configMap"]["name"] == HANDLERS
        assert config.name in handlers["data"]
        assert env["WABAHOOKS_APP_DIR"].split(":") == [str(config.parent), "/app"]
        assert "--allow-no-handlers" not in worker["args"]
    # What the ConfigMap holds passes the workers' own check.
    toml = tmp_path / "wabahooks.toml"
    toml.write_text(handlers["data"]["wabahooks.toml"])
    assert handler_check(toml, tmp_path) == ("ok", "built-ins: status_tracking, mark_read")
