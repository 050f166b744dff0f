"""Fixtures that run the collection against real test-bed hosts (testbed/)."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
# A real etcd + kube-apiserver for every integration test module (tests/integration/apiserver).
from apiserver.fixture import kube_api  # noqa: F401  pylint: disable=unused-import

REPO = Path(__file__).resolve().parents[2]
TESTBED = REPO / "testbed" / "testbed.sh"


@dataclasses.dataclass
class TestbedHost:
    name: str
    address: str
    user: str
    key: str

    def ssh(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the host as the admin account."""
        argv = [
            "ssh", "-i", self.key, "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            f"{self.user}@{self.address}", command,
        ]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=300)

    def root(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.ssh(f"sudo sh -c {shlex.quote(command)}", check=check)


@pytest.fixture(scope="session")
def testbed_host() -> TestbedHost:
    """One fresh host, never converged; removed at the end of the session."""
    subprocess.run([str(TESTBED), "up", "1"], check=True)
    try:
        inventory = yaml.safe_load((REPO / "inventories" / "testbed" / "hosts.yml").read_text())
        hosts = inventory["u7s_cluster"]["children"]["control_plane"]["hosts"]
        name, hostvars = list(hosts.items())[0]
        yield TestbedHost(
            name=name,
            address=hostvars["ansible_host"],
            user=hostvars["ansible_user"],
            key=hostvars["ansible_ssh_private_key_file"],
        )
    finally:
        subprocess.run([str(TESTBED), "down"], check=True)


@pytest.fixture
def run_playbook(testbed_host: TestbedHost, tmp_path: Path):
    """Run playbooks/site.yml (or PLAYBOOK) on the host with the test bed's group_vars plus extra vars."""

    def run(extra_vars: dict, playbook: Path = REPO / "playbooks/site.yml") -> subprocess.CompletedProcess[str]:
        inventory_dir = tmp_path / "inventory"
        inventory_dir.mkdir(exist_ok=True)
        (inventory_dir / "group_vars").mkdir(exist_ok=True)
        group_vars = yaml.safe_load((REPO / "inventories/testbed/group_vars/u7s_cluster.yml").read_text())
        group_vars.update(extra_vars)
        (inventory_dir / "group_vars" / "u7s_cluster.yml").write_text(yaml.safe_dump(group_vars))
        (inventory_dir / "hosts.yml").write_text(yaml.safe_dump({
            "u7s_cluster": {"children": {"control_plane": {"hosts": {testbed_host.name: {
                "ansible_host": testbed_host.address,
                "ansible_user": testbed_host.user,
                "ansible_ssh_private_key_file": testbed_host.key,
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            }}}}}
        }))
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        return subprocess.run(
            ["ansible-playbook", "-i", str(inventory_dir / "hosts.yml"), str(playbook)],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=900, check=False,
        )

    return run
