"""reset.yml with 3 control planes (after test_zz_ha.py and the upgrade): the workers, then the control planes
one at a time, the init host last; every host holds what hosts.yml alone leaves and nothing of the node, nobody's
subordinate ids moved, the controller's kubeconfig and the endpoint's block in u7s_controller_hosts_file are gone,
and a second reset changes nothing.

Needs an inventory with 3 control planes (the ha scenario); skipped otherwise. The collection's only reset check
on hosts (CI's time budget): the default scenario removes a worker (test_zz_lifecycle_remove.py) but no longer
resets.
"""

from __future__ import annotations

import os
import time

from testinfra.utils.ansible_runner import AnsibleRunner

from cluster_helpers import THREE_CONTROL_PLANES, Host, assert_no_node_left, control_plane_hosts, recap, run_playbook

pytestmark = THREE_CONTROL_PLANES
STATE = {}


def _runner() -> AnsibleRunner:
    return AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])


def test_reset_removes_the_cluster_from_every_host_and_the_controller():
    runner = _runner()
    first = runner.get_variables(control_plane_hosts()[0])
    name = first.get("u7s_control_plane_endpoint_name", "u7s-apiserver")
    hosts_file = first.get("u7s_controller_hosts_file", "/etc/hosts")
    hosts = [Host(os.environ["MOLECULE_INVENTORY_FILE"], host_name, runner.get_variables(host_name))
             for host_name in runner.get_hosts("u7s_cluster")]
    subids = {host.name: (host.host.run("cat /etc/subuid").stdout, host.host.run("cat /etc/subgid").stdout)
              for host in hosts}
    started = time.monotonic()
    result = run_playbook("reset.yml", timeout=1200)
    print(f"reset.yml with 3 control planes: {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    STATE["reset"] = True
    for host in hosts:
        # Every host holds what hosts.yml alone leaves (prerequisites, the engine, the node image), nothing of
        # the node; subordinate ids stay (the default reset keeps the host prerequisites).
        assert_no_node_left(host)
        assert (host.host.run("cat /etc/subuid").stdout, host.host.run("cat /etc/subgid").stdout) == subids[host.name]
    kubeconfig = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "kubeconfig")
    assert not os.path.exists(kubeconfig), "the controller's kubeconfig outlived the control planes"
    with open(hosts_file, encoding="utf-8") as controller_hosts:
        text = controller_hosts.read()
    assert not [line for line in text.splitlines() if name in line.split()[1:]], text


def test_a_second_reset_changes_nothing():
    assert STATE.get("reset"), "the first reset did not run"
    result = run_playbook("reset.yml", timeout=1200)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    counts = recap(result.stdout)
    hosts = _runner().get_hosts("u7s_cluster")
    assert {host: count["changed"] for host, count in counts.items()} == dict.fromkeys(hosts, 0), result.stdout[-4000:]
