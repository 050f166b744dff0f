"""Least exposure: what each host publishes, on which address, and who may reach it.

A third container on the hosts' network, which is not in the inventory (an "outsider"), reaches
none of the node's ports and its VXLAN datagrams are dropped (the firewall's counter says so); the
inventory's hosts and the controller still reach what they need, and the cluster stays Ready.
Test-bed hosts are containers named u7s-tb-<host> on the outer engine's network u7s-testbed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

OUTSIDER = "u7s-tb-outsider"
NETWORK = "u7s-testbed"
DEFAULT_PORTS = {"u7s_port_etcd": 2379, "u7s_port_apiserver": 6443, "u7s_port_kubelet": 10250, "u7s_port_vxlan": 8472}
# Probes TCP ports from wherever it runs: one JSON line, {"address:port": "open"|"refused"|"timeout"}.
TCP_PROBE = """
import json, socket, sys
result = {}
for target in sys.argv[1:]:
    address, port = target.rsplit(":", 1)
    try:
        socket.create_connection((address, int(port)), timeout=3).close()
        result[target] = "open"
    except ConnectionRefusedError:
        result[target] = "refused"
    except OSError:
        result[target] = "timeout"
print(json.dumps(result))
"""
UDP_SEND = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for target in sys.argv[1:]:
    address, port = target.rsplit(":", 1)
    for _ in range(5):
        sock.sendto(b"not a VXLAN packet", (address, int(port)))
"""


class Fleet:
    """The inventory's hosts, their addresses, roles and the cluster's ports."""

    def __init__(self) -> None:
        self.inventory = os.environ["MOLECULE_INVENTORY_FILE"]
        runner = AnsibleRunner(self.inventory)
        self.names = sorted(runner.get_hosts("u7s_cluster"))
        self.control_plane = runner.get_hosts("control_plane")[0]
        variables = runner.get_variables(self.control_plane)
        self.user = variables.get("u7s_user", "u7s")
        self.ports = {name: int(variables.get(name, default)) for name, default in DEFAULT_PORTS.items()}
        self.address = {name: runner.get_variables(name)["ansible_host"] for name in self.names}

    def host(self, name: str):
        return testinfra.get_host(f"ansible://{name}", ansible_inventory=self.inventory)

    def table(self) -> str:
        table = re.sub(r"[^A-Za-z0-9_]", "_", self.user)
        assert table == self.user, "the test reads the table of a plain user name only"
        return "u7s_" + table

    def drops(self, name: str) -> dict[str, int]:
        """The firewall's drop counters on a host, by rule ("udp dport 8472", ...)."""
        listing = self.host(name).run(f"sudo nft list table inet {self.table()}")
        assert listing.rc == 0, f"no firewall table on {name}: {listing.stderr}"
        return {match[0]: int(match[1]) for match in
                re.findall(r"((?:tcp|udp) dport \d+) counter packets (\d+)", listing.stdout)}


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet()


@pytest.fixture(scope="module")
def outsider(fleet):
    """run(script, *args): a Python script run in a container on the hosts' network, not in the inventory."""
    image = subprocess.run(["docker", "inspect", "-f", "{{.Config.Image}}", f"u7s-tb-{fleet.control_plane}"],
                           check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run(["docker", "rm", "-f", OUTSIDER], capture_output=True, check=False)
    subprocess.run(["docker", "run", "-d", "--name", OUTSIDER, "--network", NETWORK, "--entrypoint", "/bin/sleep",
                    image, "infinity"], check=True, capture_output=True, timeout=60)

    def run(script: str, *args: str) -> str:
        return subprocess.run(["docker", "exec", OUTSIDER, "python3", "-c", script, *args],
                              check=True, capture_output=True, text=True, timeout=120).stdout

    try:
        yield run
    finally:
        subprocess.run(["docker", "rm", "-f", OUTSIDER], capture_output=True, check=False)


def probe_from_host(fleet: Fleet, name: str, targets: list[str]) -> dict[str, str]:
    args = " ".join(targets)
    result = fleet.host(name).run(f"python3 -c '{TCP_PROBE}' {args}")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def test_each_host_publishes_only_what_others_need_on_its_own_address(fleet):
    """`ss -lntu` on each host: kubelet and VXLAN everywhere, the API server on the control plane, etcd nowhere."""
    ports = fleet.ports
    for name in fleet.names:
        listening = fleet.host(name).run("sudo ss -H -lntu").stdout.split("\n")
        found = set()
        for line in filter(None, listening):
            fields = line.split()
            protocol, local = fields[0], fields[4]
            address, port = local.rsplit(":", 1)
            if int(port) in ports.values():
                found.add((protocol, int(port)))
                assert address == fleet.address[name], f"{name} publishes {local}, not on its own address only"
        expected = {("tcp", ports["u7s_port_kubelet"]), ("udp", ports["u7s_port_vxlan"])}
        if name == fleet.control_plane:
            expected.add(("tcp", ports["u7s_port_apiserver"]))
        assert found == expected, f"{name}: {sorted(found)}"


def test_an_outsider_reaches_no_port_of_the_node(fleet, outsider):
    ports = fleet.ports
    targets = [f"{fleet.address[name]}:{ports['u7s_port_kubelet']}" for name in fleet.names]
    cp = fleet.address[fleet.control_plane]
    targets += [f"{cp}:{ports['u7s_port_apiserver']}", f"{cp}:{ports['u7s_port_etcd']}"]
    result = json.loads(outsider(TCP_PROBE, *targets))
    # Dropped (a timeout), except etcd, which nothing publishes (refused).
    assert {target: state for target, state in result.items() if state == "open"} == {}, result
    assert result[f"{cp}:{ports['u7s_port_etcd']}"] == "refused", result
    assert all(state == "timeout" for target, state in result.items() if not target.endswith(f":{ports['u7s_port_etcd']}")), result


def test_an_outsiders_vxlan_datagrams_are_dropped(fleet, outsider):
    rule = f"udp dport {fleet.ports['u7s_port_vxlan']}"
    before = {name: fleet.drops(name)[rule] for name in fleet.names}
    outsider(UDP_SEND, *[f"{fleet.address[name]}:{fleet.ports['u7s_port_vxlan']}" for name in fleet.names])
    after = {name: fleet.drops(name)[rule] for name in fleet.names}
    assert all(after[name] - before[name] >= 5 for name in fleet.names), (before, after)


def test_the_inventorys_hosts_still_reach_the_node(fleet):
    ports = fleet.ports
    for name in fleet.names:
        others = [other for other in fleet.names if other != name]
        targets = [f"{fleet.address[other]}:{ports['u7s_port_kubelet']}" for other in others]
        if name != fleet.control_plane:
            targets.append(f"{fleet.address[fleet.control_plane]}:{ports['u7s_port_apiserver']}")
        assert set(probe_from_host(fleet, name, targets).values()) == {"open"}, name


def test_the_cluster_stays_ready_behind_the_firewall(core):
    """The controller reaches the API server (it is one of its sources), and every node is Ready."""
    nodes = core.list_node().items
    assert len(nodes) >= 2
    for node in nodes:
        ready = [c.status for c in node.status.conditions or [] if c.type == "Ready"]
        assert ready == ["True"], node.metadata.name
