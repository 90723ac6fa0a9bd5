"""`bounce-operator`'s command line: a scope is required, peering is off unless asked for."""

from __future__ import annotations

import subprocess
from urllib.parse import urlsplit

import pytest
from bounce_operator.cli import build_parser
from bounce_operator.manifests import operator_manifests

from .conftest import OPERATOR


def test_a_scope_must_be_chosen_and_only_one() -> None:
    result = subprocess.run([str(OPERATOR)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "one of the arguments -n/--namespace -A/--all-namespaces is required" in result.stderr
    with pytest.raises(SystemExit):
        build_parser().parse_args(["-A", "-n", "mail"])


def test_defaults_are_standalone_with_the_liveness_endpoint_the_deployment_probes() -> None:
    args = build_parser().parse_args(["--namespace", "mail", "--namespace", "marketing"])
    assert args.namespaces == ["mail", "marketing"] and not args.all_namespaces
    assert args.peering is None  # standalone: no KopfPeering objects, no RBAC for them
    (deployment,) = [m for m in operator_manifests() if m["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    probe = container["livenessProbe"]["httpGet"]
    liveness = urlsplit(args.liveness)
    assert (liveness.port, liveness.path) == (port["containerPort"], probe["path"]) and probe["port"] == port["name"]
