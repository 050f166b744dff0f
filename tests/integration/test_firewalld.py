"""On a host where firewalld runs, the firewall role opens the node's ports in firewalld's zone, and reset closes them.

The test-bed host is a container with a network namespace of its own, so firewalld is installed and
started there (and removed afterwards). About two minutes: one install, five short playbook runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIREWALL = HERE / "playbooks" / "firewall.yml"
RESET = HERE / "playbooks" / "firewall-reset.yml"

# The test bed's cluster (u7s, default ports) and a second user's on the same host.
FIRST = {"user": "u7s", "ports": {"6443/tcp", "10250/tcp", "8472/udp"}}
SECOND = {"user": "u7s2", "ports": {"7443/tcp", "11250/tcp", "8473/udp"},
          "vars": {"u7s_user": "u7s2", "u7s_port_apiserver": 7443, "u7s_port_kubelet": 11250, "u7s_port_vxlan": 8473,
                   "u7s_port_etcd": 3379}}
# Opened by "the site" before the collection runs: one of the node's ports and one of its own.
SITE_PORTS = {"10250/tcp", "9999/tcp"}


@pytest.fixture(scope="module")
def firewalld(testbed_host):
    """firewalld installed and running, the site's ports open in its zone; the zone's name."""
    # A fresh host has no package lists yet.
    testbed_host.root("apt-get update -q >/dev/null"
                      " && DEBIAN_FRONTEND=noninteractive apt-get install -y -q firewalld >/dev/null"
                      " && systemctl enable --now firewalld && firewall-cmd --state")
    zone = testbed_host.root("firewall-cmd --get-default-zone").stdout.strip()
    for port in sorted(SITE_PORTS):
        testbed_host.root(f"firewall-cmd --zone={zone} --add-port={port}"
                          f" && firewall-cmd --permanent --zone={zone} --add-port={port}")
    yield zone
    testbed_host.root("systemctl disable --now firewalld; DEBIAN_FRONTEND=noninteractive apt-get purge -y -q firewalld"
                      " >/dev/null; rm -rf /etc/firewalld /etc/u7s/firewalld-*.json", check=False)


def open_ports(host, zone: str) -> tuple[set[str], set[str]]:
    """The ports firewalld's zone lets in: (runtime, permanent)."""
    runtime = host.root(f"firewall-cmd --zone={zone} --list-ports").stdout.split()
    permanent = host.root(f"firewall-cmd --permanent --zone={zone} --list-ports").stdout.split()
    return set(runtime), set(permanent)


def recap_changed(output: str) -> int:
    found = re.findall(r"changed=(\d+)", output)
    assert found, output
    return sum(int(count) for count in found)


def test_firewalld_gets_the_nodes_ports_and_reset_closes_only_those(testbed_host, firewalld, run_playbook):
    zone = firewalld
    interface = testbed_host.root(f"ip -o addr show to {testbed_host.address}").stdout.split()[1]
    bound = testbed_host.root(f"firewall-cmd --get-zone-of-interface={interface}", check=False).stdout.strip()
    assert bound in ("no zone", zone, ""), bound  # a fresh firewalld serves the address by its default zone

    first = run_playbook({}, playbook=FIREWALL)
    assert first.returncode == 0, first.stdout + first.stderr
    runtime, permanent = open_ports(testbed_host, zone)
    assert FIRST["ports"] | SITE_PORTS <= runtime
    assert FIRST["ports"] | SITE_PORTS <= permanent
    # The collection recorded what it opened: not the kubelet port, which the site had opened.
    state = json.loads(testbed_host.root("cat /etc/u7s/firewalld-u7s.json").stdout)
    assert state == {"opened": [{"zone": zone, "port": port} for port in ("6443/tcp", "8472/udp")]}, state
    # The cluster's table still narrows the sources; firewalld's own table is there beside it.
    assert testbed_host.root("nft list table inet u7s_u7s", check=False).returncode == 0
    assert testbed_host.root("nft list tables").stdout.count("table inet firewalld") == 1

    again = run_playbook({}, playbook=FIREWALL)
    assert again.returncode == 0, again.stdout + again.stderr
    assert recap_changed(again.stdout) == 0, again.stdout

    # firewalld reloaded (as a site does) keeps the ports and leaves the cluster's table alone.
    testbed_host.root("firewall-cmd --reload")
    assert FIRST["ports"] <= open_ports(testbed_host, zone)[0]
    assert testbed_host.root("nft list table inet u7s_u7s", check=False).returncode == 0

    # A second user's cluster on the same host opens and records its own ports.
    second = run_playbook(SECOND["vars"], playbook=FIREWALL)
    assert second.returncode == 0, second.stdout + second.stderr
    state2 = json.loads(testbed_host.root("cat /etc/u7s/firewalld-u7s2.json").stdout)
    assert {entry["port"] for entry in state2["opened"]} == SECOND["ports"]
    assert SECOND["ports"] | FIRST["ports"] <= open_ports(testbed_host, zone)[1]

    # Reset of the first cluster: its two ports close, the site's and the second cluster's stay.
    reset = run_playbook({}, playbook=RESET)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    runtime, permanent = open_ports(testbed_host, zone)
    for ports in (runtime, permanent):
        assert not {"6443/tcp", "8472/udp"} & ports, ports
        assert SITE_PORTS | SECOND["ports"] <= ports, ports
    assert testbed_host.root("test -e /etc/u7s/firewalld-u7s.json", check=False).returncode != 0
    assert testbed_host.root("nft list table inet u7s_u7s", check=False).returncode != 0
    assert testbed_host.root("nft list table inet u7s_u7s2", check=False).returncode == 0

    # u7s_firewall=false removes the second cluster's the same way.
    off = run_playbook({**SECOND["vars"], "u7s_firewall": False}, playbook=FIREWALL)
    assert off.returncode == 0, off.stdout + off.stderr
    runtime, permanent = open_ports(testbed_host, zone)
    for ports in (runtime, permanent):
        assert ports == SITE_PORTS, ports
    assert testbed_host.root("nft list table inet u7s_u7s2", check=False).returncode != 0
