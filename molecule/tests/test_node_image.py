"""The node image node_image loads into every host's rootless engine, and a node container from it."""

from __future__ import annotations

import json
import shlex
import time

import pytest

NODE_IMAGE = "localhost/u7s/node"
CONTAINER = "u7s-node"
BOOT_TIMEOUT = 240


@pytest.fixture
def node_ref(as_user, engine) -> str:
    # Every image, filtered here: nerdctl v2.2.0 listed none for the repository argument (measured).
    listed = as_user(f"{engine} images --format '{{{{.Repository}}}}:{{{{.Tag}}}}'")
    assert listed.rc == 0, listed.stderr
    refs = sorted({ref for ref in listed.stdout.split() if ref.startswith(NODE_IMAGE + ":")})
    assert len(refs) == 1, refs
    return refs[0]


def test_node_image_tag_follows_its_kubernetes_version(as_user, engine, node_ref):
    label = as_user(
        f"{engine} image inspect --format '{{{{index .Config.Labels \"io.u7s.kubernetes-version\"}}}}' {node_ref}"
    )
    assert label.rc == 0, label.stderr
    assert node_ref == f"{NODE_IMAGE}:{label.stdout.strip()}"


def test_no_archive_left_on_the_host(as_user):
    """The copy (node-<version>.tar.zst) and any decompressed one are removed after the load."""
    listed = as_user("ls -A ~/.cache/u7s 2>/dev/null || true")
    assert listed.rc == 0, listed.stderr
    assert [name for name in listed.stdout.split() if ".tar" in name] == []


@pytest.fixture
def node_container(as_user, engine):
    """Run a command in the node container the node role started."""
    return lambda command: as_user(f"{engine} exec {CONTAINER} sh -c {shlex.quote(command)}")


def test_node_container_boots_with_every_kubeadm_image(node_container):
    wanted = node_container("kubeadm config images list --kubernetes-version \"$(cat /kind/version)\"")
    assert wanted.rc == 0, wanted.stderr
    wanted_images = set(wanted.stdout.split())
    assert len(wanted_images) >= 7, wanted_images

    deadline = time.monotonic() + BOOT_TIMEOUT
    present: set[str] = set()
    containerd = ""
    while time.monotonic() < deadline:
        containerd = node_container("systemctl is-active containerd").stdout.strip()
        listed = node_container("crictl images -o json")
        if containerd == "active" and listed.rc == 0:
            present = {tag for image in json.loads(listed.stdout)["images"] for tag in image.get("repoTags") or []}
            if wanted_images <= present:
                break
        time.sleep(3)
    state = node_container("systemctl is-system-running; systemctl --failed --no-legend")
    assert containerd == "active", state.stdout
    assert wanted_images <= present, (sorted(wanted_images - present), state.stdout)
    # The wrapper entrypoint gave the kubelet its Usernetes flags.
    kubelet_args = node_container("cat /etc/default/kubelet").stdout
    assert "--cloud-provider=external" in kubelet_args
    assert "--node-labels=usernetes/host-ip=" in kubelet_args
