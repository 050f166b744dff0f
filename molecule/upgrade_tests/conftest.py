"""Helpers for the testinfra checks every scenario shares."""

from __future__ import annotations

import os
import shlex

import pytest
import testinfra


@pytest.fixture
def hostvars(host) -> dict:
    return host.ansible.get_variables()


@pytest.fixture
def cluster_user(hostvars) -> str:
    return hostvars.get("u7s_user", "u7s")


@pytest.fixture
def engine(hostvars) -> str:
    return hostvars.get("u7s_engine", "docker")


@pytest.fixture
def as_user(host, cluster_user):
    """Run a shell command as the cluster user in its session environment."""

    def run(command: str):
        uid = host.user(cluster_user).uid
        env = f"XDG_RUNTIME_DIR=/run/user/{uid} DOCKER_HOST=unix:///run/user/{uid}/docker.sock"
        # From the user's home: podman refuses to run in a directory it cannot enter.
        script = shlex.quote(f"cd ~ && {command}")
        return host.run(f"sudo -H -u {cluster_user} env {env} sh -c {script}")

    return run


@pytest.fixture
def other_host(hostvars):
    """The other test-bed host, reached through the same inventory."""
    me = hostvars["inventory_hostname"]
    other = next(name for name in sorted(hostvars["groups"]["u7s_cluster"]) if name != me)
    return testinfra.get_host(f"ansible://{other}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


# The cluster, through the kubeconfig the kubeadm role wrote on the controller.
@pytest.fixture(scope="session")
def api():
    config = pytest.importorskip("kubernetes.config", reason="the kubernetes Python library is a controller requirement")
    kubeconfig = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "kubeconfig")
    assert os.path.exists(kubeconfig), "the kubeadm role wrote no kubeconfig on the controller"
    assert os.stat(kubeconfig).st_mode & 0o077 == 0, "the controller's kubeconfig is readable by others"
    return config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture(scope="session")
def core(api):
    from kubernetes import client  # pylint: disable=import-outside-toplevel
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def busybox_image(core) -> str:
    """The busybox image the offline images preload in every node (no registry is reachable)."""
    images = {tag for node in core.list_node().items for image in node.status.images or [] for tag in image.names or []}
    refs = sorted(ref for ref in images if ref.startswith("localhost/u7s/busybox:"))
    assert refs, f"no localhost/u7s/busybox image in the nodes: {sorted(images)}"
    return refs[-1]
