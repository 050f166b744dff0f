# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The fleet registry: image names under it, the load plan, and its check in the cluster model."""

from __future__ import annotations

import pytest
from cluster_inventory import cluster_groups, records_of, settings_spec

from ansible_collections.u7s.cluster.plugins.module_utils.cluster_model import ClusterInput, plan_cluster
from ansible_collections.u7s.cluster.plugins.module_utils.fleet_registry import (
    ImageNameError,
    archive_images,
    fleet_path,
    fleet_ref,
    load_plan,
    manifest_config_digest,
    offline_images,
)

CA = ("/inv/artifacts/registry-ca.pem", "/inv/artifacts/registry-ca-key.pem")


@pytest.mark.parametrize(("ref", "path"), [
    ("localhost/u7s/node:v1.36.4", "u7s/node:v1.36.4"),
    ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
    ("registry.k8s.io/coredns/coredns:v1.12.0", "registry.k8s.io/coredns/coredns:v1.12.0"),
    ("ghcr.io/flannel-io/flannel:v0.27.4", "ghcr.io/flannel-io/flannel:v0.27.4"),
    ("busybox:1.37", "docker.io/library/busybox:1.37"),
    ("busybox", "docker.io/library/busybox:latest"),
    ("team/app:1", "docker.io/team/app:1"),
    ("registry.example:5000/app:1", "registry.example:5000/app:1"),
    ("localhost/u7s/busybox:1.37.0-6_b9", "u7s/busybox:1.37.0-6_b9"),
    ("quay.io/a/b@sha256:" + "a" * 64, "quay.io/a/b@sha256:" + "a" * 64),
])
def test_names_keep_their_registry_as_the_first_path_component(ref, path):
    assert fleet_path(ref) == path
    assert fleet_ref(ref, "192.0.2.5:5000") == "192.0.2.5:5000/" + path


@pytest.mark.parametrize("ref", ["", "Upper/Case:1", "localhost/:1", " x", 5])
def test_names_the_registry_cannot_take_are_refused(ref):
    with pytest.raises(ImageNameError):
        fleet_path(ref)


def test_offline_images_leave_the_node_base_out():
    manifest = {"images": [
        {"ref": "registry.k8s.io/pause:3.10", "file": "pause_3.10.tar.zst", "id": "sha256:1", "role": "kubeadm"},
        {"ref": "localhost/u7s/node-base:v1.36.4", "file": "node-base.tar.zst", "id": "sha256:2", "role": "node"},
    ]}
    assert offline_images(manifest, "/cache/k") == [
        {"ref": "registry.k8s.io/pause:3.10", "file": "/cache/k/pause_3.10.tar.zst", "id": "sha256:1"}]
    with pytest.raises(ValueError, match="manifest.json"):
        offline_images({"images": [{"ref": "x"}]}, "/cache/k")


def test_each_archive_is_uploaded_once_and_only_what_the_registry_lacks():
    images = [
        {"ref": "localhost/u7s/node:v1.36.4", "file": "/c/node.tar.zst", "id": "sha256:n"},
        {"ref": "site/app:1", "file": "/c/site.tar", "id": "sha256:a"},
        {"ref": "site/app:latest", "file": "/c/site.tar", "id": "sha256:a"},
        {"ref": "registry.k8s.io/pause:3.10", "file": "/c/pause.tar.zst", "id": "sha256:p"},
    ]
    pushed = {"u7s/node:v1.36.4": "sha256:n", "registry.k8s.io/pause:3.10": "sha256:old"}
    assert load_plan(images, pushed) == [
        {"file": "/c/site.tar", "refs": [
            {"ref": "site/app:1", "path": "docker.io/site/app:1"},
            {"ref": "site/app:latest", "path": "docker.io/site/app:latest"}]},
        {"file": "/c/pause.tar.zst", "refs": [
            {"ref": "registry.k8s.io/pause:3.10", "path": "registry.k8s.io/pause:3.10"}]},
    ]
    held = {fleet_path(image["ref"]): image["id"] for image in images}
    assert load_plan(images, held) == []


def test_the_image_id_is_the_manifests_config_digest():
    assert manifest_config_digest({"config": {"digest": "sha256:c"}}) == "sha256:c"
    assert manifest_config_digest({"manifests": []}) is None
    assert manifest_config_digest(None) is None


def test_archive_images_lists_every_name():
    results = [{"item": "/c/a.tar", "images": [{"id": "sha256:a", "repo_tags": ["a:1", "a:2"]}]}]
    assert archive_images(results) == [{"ref": "a:1", "file": "/c/a.tar", "id": "sha256:a"},
                                       {"ref": "a:2", "file": "/c/a.tar", "id": "sha256:a"}]


def registry_plan_of(group_vars=None, registry_hosts=None, groups=None, missing=(), purpose="bring-up", names=("host1", "host2")):
    records = records_of(names, group_vars)
    groups = groups or {**cluster_groups(list(names)), "u7s_registry": [host["name"] for host in registry_hosts or []]}
    return plan_cluster(ClusterInput("u7s_cluster", groups, settings_spec(), frozenset(missing), registry_hosts, CA),
                        records, purpose)


REG = {"name": "reg1", "host_ip": "", "ansible_host": "192.0.2.5", "default_ipv4": None}


def test_no_registry_group_means_no_registry():
    assert registry_plan_of()["registry"] is None
    assert registry_plan_of(registry_hosts=[])["registry"] is None


def test_a_registry_host_outside_the_cluster():
    found = registry_plan_of(registry_hosts=[REG])
    assert found["problems"] == []
    registry = found["registry"]
    assert registry["endpoint"] == "192.0.2.5:5000"
    assert registry["node_image"] == "192.0.2.5:5000/u7s/node:v1.36.4"
    assert registry["ca_file"] == CA[0] and registry["generate_ca"] is True
    assert set(registry["subject_alt_names"]) == {"IP:192.0.2.5", "DNS:localhost", "IP:127.0.0.1"}
    assert registry["in_cluster"] is False


def test_the_given_address_wins_and_may_be_a_name():
    found = registry_plan_of({"u7s_registry_address": "registry.site.example"}, [REG])
    assert found["registry"]["endpoint"] == "registry.site.example:5000"
    assert "DNS:registry.site.example" in found["registry"]["subject_alt_names"]


def test_a_cluster_host_as_registry_uses_its_planned_address():
    found = registry_plan_of(registry_hosts=[{"name": "host2", "host_ip": "", "ansible_host": None, "default_ipv4": None}])
    assert found["problems"] == [] and found["registry"]["endpoint"] == "192.0.2.12:5000"
    assert found["registry"]["in_cluster"] is True


def test_the_registry_port_may_not_be_a_node_port_of_its_host():
    found = registry_plan_of({"u7s_registry_port": 10250},
                             [{"name": "host2", "host_ip": "", "ansible_host": None, "default_ipv4": None}])
    assert any("u7s_registry_port" in text and "10250" in text for text in found["problems"]), found["problems"]


@pytest.mark.parametrize(("group_vars", "registry_hosts", "missing", "expected"), [
    ({}, [REG, dict(REG, name="reg2")], (), "holds 2 hosts (reg1, reg2)"),
    ({"u7s_registry_port": 443}, [REG], (), "u7s_registry_port is 443"),
    ({"u7s_registry_user": "u7s"}, [REG], (), "also a cluster user"),
    ({"u7s_registry_user": "root"}, [REG], (), "not an unprivileged account name"),
    ({}, [dict(REG, ansible_host="reg1.example")], (), "address is unknown"),
    ({"u7s_registry_address": "Reg.Example"}, [REG], (), "has upper-case letters"),
    ({"u7s_registry_ca_file": "/site/ca.pem"}, [REG], (), "u7s_registry_ca_key_file is not"),
    ({"u7s_registry_ca_file": "/site/ca.pem", "u7s_registry_ca_key_file": "/site/key.pem"}, [REG], ("/site/ca.pem",),
     "u7s_registry_ca_file names /site/ca.pem, which is not a file"),
    ({"u7s_registry_images": ["app.tar"]}, [REG], (), "u7s_registry_images[0] is 'app.tar'"),
    ({"u7s_registry_images": ["/c/app.tar"]}, [REG], ("/c/app.tar",), "u7s_registry_images[0] names /c/app.tar"),
    ({"u7s_registry_offline_images_dir": "/cache/k"}, [REG], ("/cache/k/manifest.json",), "holds no manifest.json"),
    ({"u7s_registries": {"192.0.2.5:5000": {"ca_file": "/x/ca.pem"}}}, [REG], (), "which the collection adds itself"),
    ({}, [REG], (CA[0],), "run playbooks/registry.yml first"),
])
def test_refused_before_any_host_changes(group_vars, registry_hosts, missing, expected):
    found = registry_plan_of(group_vars, registry_hosts, missing=missing)
    assert any(expected in text for text in found["problems"]), found["problems"]
    assert found["hosts"] == {}


def test_the_registry_playbooks_may_run_before_the_ca_exists():
    assert registry_plan_of(registry_hosts=[REG], missing=(CA[0],), purpose="registry")["problems"] == []
    assert registry_plan_of(registry_hosts=[REG], missing=(CA[0],), purpose="reset")["problems"] == []


def test_a_given_ca_is_used_and_not_generated():
    found = registry_plan_of({"u7s_registry_ca_file": "/site/ca.pem", "u7s_registry_ca_key_file": "/site/key.pem"},
                             [REG], missing=(CA[0],))
    assert found["problems"] == []
    assert (found["registry"]["ca_file"], found["registry"]["ca_key_file"]) == ("/site/ca.pem", "/site/key.pem")
    assert found["registry"]["generate_ca"] is False
