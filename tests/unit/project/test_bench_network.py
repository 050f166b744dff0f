# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""bench/network.sh and its workload, as far as they can be checked without a test bed (it has not run yet)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "bench/network.sh"
WORKLOAD = REPO / "bench/network.yml"


def test_the_workload_is_one_list_with_the_server_behind_a_local_nodeport():
    items = {(item["kind"], item["metadata"]["name"]): item for item in yaml.safe_load(WORKLOAD.read_text())["items"]}
    service = items[("Service", "iperf3")]["spec"]
    assert service["type"] == "NodePort" and service["externalTrafficPolicy"] == "Local"
    assert 30000 <= service["ports"][0]["nodePort"] <= 32767
    assert service["selector"] == items[("Pod", "iperf3-server")]["metadata"]["labels"]
    pods = [item for item in items.values() if item["kind"] == "Pod"]
    assert {pod["spec"]["nodeName"] for pod in pods} == {"@SERVER_NODE@", "@OTHER_NODE@"}
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        assert container["image"] == "@IMAGE@" and container["imagePullPolicy"] == "Never"


def test_the_script_fills_every_placeholder_of_the_workload():
    placeholders = set(re.findall(r"@([A-Z_]+)@", WORKLOAD.read_text().split("apiVersion", 1)[1]))
    substituted = set(re.findall(r's\|@([A-Z_]+)@\|', SCRIPT.read_text()))
    assert placeholders == substituted == {"IMAGE", "SERVER_NODE", "OTHER_NODE"}


def test_the_iperf3_image_is_built_like_the_other_offline_images():
    images = (REPO / "artifacts/images.sh").read_text()
    assert 'small_rootfs iperf3 closure "$SRC/packages/iperf3.list"' in images
    assert 'add_image test "$IPERF3_IMAGE"' in images
    dockerfile = (REPO / "artifacts/images/iperf3/Dockerfile").read_text()
    assert "ADD iperf3.tar /" in dockerfile and 'ENTRYPOINT ["/usr/bin/iperf3"]' in dockerfile


@pytest.mark.parametrize(("environment", "arguments", "says"), [
    ({"U7S_BENCH_RUNS": "2"}, [], "U7S_BENCH_RUNS must be 3 or more"),
    ({"U7S_BENCH_SECONDS": "ten"}, [], "U7S_BENCH_SECONDS must be a whole number"),
    ({}, ["rootful"], "unknown configuration 'rootful'"),
])
def test_the_script_refuses_before_it_touches_the_test_bed(environment, arguments, says):
    result = subprocess.run([str(SCRIPT), *arguments], env={**os.environ, **environment},
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1 and says in result.stderr
