# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The nerdctl node container's command line and decisions (plugins/module_utils/nerdctl.py)."""

from __future__ import annotations

import hashlib
import json

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils import nerdctl

SPEC = {
    "name": "u7s-node",
    "image": "localhost/u7s/node:v1.36.4",
    "hostname": "u7s-host1",
    "privileged": True,
    "restart": "always",
    "network": "u7s-node",
    "ip": "10.100.1.2",
    "publish": ["192.0.2.1:10250:10250/tcp", "192.0.2.1:8472:8472/udp"],
    "volumes": ["u7s-node-var:/var", "/lib/modules:/lib/modules:ro"],
    "tmpfs": ["/run", "/tmp"],
    "cgroupns": "private",
    "sysctls": {"net.ipv4.ip_forward": "1"},
    "env": {"HOST_IP": "192.0.2.1", "KUBECONFIG": "/etc/kubernetes/admin.conf"},
}
IMAGE_ID = "sha256:" + "a" * 64


def inspect(spec=None, image_id=IMAGE_ID, running=True, labels=None):
    spec = SPEC if spec is None else spec
    argv = nerdctl.run_argv(spec, image_id)
    found = {}
    for i, arg in enumerate(argv):
        if arg == "--label":
            key, value = argv[i + 1].split("=", 1)
            found[key] = value
    if labels is not None:
        found = labels
    return json.dumps([{"Name": spec["name"], "Image": spec["image"], "Config": {"Labels": found},
                        "State": {"Running": running, "Status": "running" if running else "exited"}}])


def test_run_argv_carries_every_field_in_order():
    argv = nerdctl.run_argv(SPEC, IMAGE_ID)
    assert argv[:5] == ["nerdctl", "run", "--detach", "--name", "u7s-node"]
    assert argv[-1] == SPEC["image"]
    for pair in (["--hostname", "u7s-host1"], ["--restart", "always"], ["--network", "u7s-node"],
                 ["--ip", "10.100.1.2"], ["--cgroupns", "private"], ["--sysctl", "net.ipv4.ip_forward=1"],
                 ["--env", "HOST_IP=192.0.2.1"], ["--tmpfs", "/run"], ["--volume", "u7s-node-var:/var"],
                 ["--publish", "192.0.2.1:8472:8472/udp"], ["--label", "u7s.cluster/image=" + IMAGE_ID]):
        assert pair in [argv[i:i + 2] for i in range(len(argv) - 1)], pair
    assert "--privileged" in argv


def test_run_argv_is_stable_and_its_hash_ignores_field_order():
    reordered = dict(reversed(list(SPEC.items())))
    assert nerdctl.run_argv(reordered, IMAGE_ID) == nerdctl.run_argv(SPEC, IMAGE_ID)
    assert nerdctl.spec_hash(reordered) == nerdctl.spec_hash(SPEC)


def test_image_id_without_prefix_is_labelled_with_it():
    assert "u7s.cluster/image=" + IMAGE_ID in nerdctl.run_argv(SPEC, "a" * 64)


def test_run_argv_with_another_cli():
    assert nerdctl.run_argv({"name": "x", "image": "i"}, cli="/usr/local/bin/nerdctl")[0] == "/usr/local/bin/nerdctl"


@pytest.mark.parametrize("spec, message", [
    ({"name": "x"}, "non-empty image"),
    ({"name": "x", "image": "i", "ports": []}, "unknown container spec fields: ports"),
    ({"name": "x", "image": "i", "ip": "10.0.0.2"}, "fixed ip needs a network"),
    ({"name": "x", "image": "i", "env": {"A=B": "1"}}, "is not one"),
    ({"name": "x", "image": "i", "env": {"A": "1\n2"}}, "newline"),
])
def test_bad_specs_are_refused(spec, message):
    with pytest.raises(nerdctl.SpecError, match=message):
        nerdctl.run_argv(spec)


@pytest.mark.parametrize("answer", ["", "[]", None, []])
def test_no_container_is_created(answer):
    assert nerdctl.container_action(answer, SPEC, IMAGE_ID) == "create"


def test_the_same_container_running_needs_nothing():
    assert nerdctl.container_action(inspect(), SPEC, IMAGE_ID) == "none"


def test_the_same_container_stopped_is_started():
    assert nerdctl.container_action(inspect(running=False), SPEC, IMAGE_ID) == "start"


def test_a_changed_spec_recreates():
    changed = {**SPEC, "publish": SPEC["publish"] + ["192.0.2.1:6443:6443/tcp"]}
    assert nerdctl.container_action(inspect(), changed, IMAGE_ID) == "recreate"


def test_another_image_under_the_same_name_recreates():
    assert nerdctl.container_action(inspect(), SPEC, "sha256:" + "b" * 64) == "recreate"
    # The ID as the engine printed it, without the prefix, is the same image.
    assert nerdctl.container_action(inspect(), SPEC, "a" * 64) == "none"


def test_a_container_of_someone_else_recreates():
    assert nerdctl.container_action(inspect(labels={}), SPEC, IMAGE_ID) == "recreate"


def test_the_image_is_not_compared_without_an_id():
    assert nerdctl.container_action(inspect(image_id=""), SPEC) == "none"


NETWORK = json.dumps([{"Name": "u7s-node", "IPAM": {"Config": [{"Subnet": "10.100.1.0/24", "Gateway": "10.100.1.1"}]}}])


@pytest.mark.parametrize("answer, subnet, gateway, action", [
    ("", "10.100.1.0/24", "10.100.1.1", "create"),
    (NETWORK, "10.100.1.0/24", "10.100.1.1", "none"),
    (NETWORK, "10.100.1.0/24", "", "none"),
    (NETWORK, "10.100.2.0/24", "10.100.2.1", "differs"),
    (NETWORK, "10.100.1.0/24", "10.100.1.254", "differs"),
    (json.dumps([{"Name": "u7s-node", "IPAM": {"Config": [{"Subnet": "10.100.1.0/24"}]}}]),
     "10.100.1.0/24", "10.100.1.1", "none"),
])
def test_network_action(answer, subnet, gateway, action):
    assert nerdctl.network_action(answer, subnet, gateway) == action


def test_image_ids():
    answer = json.dumps([{"Id": "sha256:" + "c" * 64, "RepoTags": ["x:1"]}, {"Id": "d" * 64}])
    assert nerdctl.image_ids(answer) == ["sha256:" + "c" * 64, "sha256:" + "d" * 64]
    assert nerdctl.image_ids("") == []
    assert nerdctl.image_ids("[]") == []


def test_inspect_answers_must_be_json_lists():
    with pytest.raises(nerdctl.SpecError):
        nerdctl.container_action(42, SPEC)


def test_image_names():
    listing = "\n".join(json.dumps(x) for x in [
        {"Repository": "localhost/u7s/node", "Tag": "v1.36.4", "ID": "abc"},
        {"Repository": "<none>", "Tag": "<none>", "ID": "def"},
        {"Repository": "docker.io/library/busybox", "Tag": "<none>"},
    ]) + "\n"
    assert nerdctl.image_names(listing) == ["localhost/u7s/node:v1.36.4"]
    assert nerdctl.image_names("") == []


# --- annotations (bypass4netns) ---------------------------------------------------------------------------

ANNOTATED = {**SPEC, "annotations": nerdctl.bypass4netns_annotations(["10.96.0.0/16", "10.244.0.0/16"])}


def test_annotations_are_passed_to_nerdctl_run():
    argv = nerdctl.run_argv(ANNOTATED, IMAGE_ID)
    pairs = [argv[i:i + 2] for i in range(len(argv) - 1) if argv[i] == "--annotation"]
    assert pairs == [["--annotation", "nerdctl/bypass4netns=true"],
                     ["--annotation", "nerdctl/bypass4netns-ignore-bind=true"],
                     ["--annotation", 'nerdctl/bypass4netns-ignore-subnets=["10.96.0.0/16","10.244.0.0/16"]']]
    assert argv[-1] == SPEC["image"]


def test_a_spec_without_annotations_keeps_the_hash_it_had_before_they_were_a_field():
    """Nodes created before annotations were a spec field are not recreated for it."""
    before = {key: value for key, value in nerdctl.normalize_spec(SPEC).items() if key != "annotations"}
    old_hash = hashlib.sha256(json.dumps(before, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert nerdctl.spec_hash(SPEC) == nerdctl.spec_hash({**SPEC, "annotations": {}}) == old_hash


def test_turning_bypass4netns_on_or_off_recreates_the_container():
    assert nerdctl.container_action(inspect(SPEC), ANNOTATED, IMAGE_ID) == "recreate"
    assert nerdctl.container_action(inspect(ANNOTATED), SPEC, IMAGE_ID) == "recreate"
    assert nerdctl.container_action(inspect(ANNOTATED), ANNOTATED, IMAGE_ID) == "none"
    other = {**SPEC, "annotations": nerdctl.bypass4netns_annotations(["10.96.0.0/16"])}
    assert nerdctl.container_action(inspect(ANNOTATED), other, IMAGE_ID) == "recreate"


@pytest.mark.parametrize("name", ["", "a=b"])
def test_an_annotation_without_a_name_is_refused(name):
    with pytest.raises(nerdctl.SpecError):
        nerdctl.run_argv({**SPEC, "annotations": {name: "x"}})
