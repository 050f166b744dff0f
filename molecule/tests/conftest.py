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
