"""The scenario that tests the upgrade (ha) starts at the previous pin: its host_vars name artifacts/versions-previous.env's
version, so that a pin bump that forgets it fails here instead of skipping the upgrade checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PREVIOUS = re.search(r"^K8S_VERSION=(\S+)$", (REPO / "artifacts/versions-previous.env").read_text(), re.M).group(1)


@pytest.mark.parametrize("scenario", ["ha"])
def test_the_upgrade_scenarios_start_at_the_previous_pin(scenario):
    files = sorted((REPO / "molecule" / scenario / "host_vars").glob("*.yml"))
    platforms = yaml.safe_load((REPO / "molecule" / scenario / "molecule.yml").read_text())["platforms"]
    assert [path.stem for path in files] == sorted(platform["name"] for platform in platforms)
    for path in files:
        assert (yaml.safe_load(path.read_text()) or {}).get("u7s_kubernetes_version") == PREVIOUS, path
