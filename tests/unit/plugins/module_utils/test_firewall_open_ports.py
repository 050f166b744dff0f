# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Opening the node's ports in a firewall that rejects by default: firewalld's plan, ufw's check, the interface."""

from __future__ import annotations

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils.firewall import (
    FirewallError,
    firewalld_allowed,
    firewalld_info,
    firewalld_plan,
    interface_of,
    ufw_missing,
)

PORTS = [{"port": 6443, "protocol": "tcp", "sources": "apiserver"},
         {"port": 10250, "protocol": "tcp", "sources": "cluster"},
         {"port": 8472, "protocol": "udp", "sources": "cluster"}]

# firewall-cmd --permanent --info-zone=public (firewalld 2.x, Debian trixie).
PUBLIC = """public
  target: default
  ingress-priority: 0
  egress-priority: 0
  icmp-block-inversion: no
  interfaces: eth0
  sources:
  services: dhcpv6-client ssh
  ports:
  protocols:
  forward: yes
  masquerade: no
  forward-ports:
  source-ports:
  icmp-blocks:
  rich rules:
"""
SERVICES = {"ssh": "ssh\n  ports: 22/tcp\n  protocols: \n", "dhcpv6-client": "dhcpv6-client\n  ports: 546/udp\n"}


def zone(**fields: str) -> str:
    lines = PUBLIC.splitlines()
    for key, value in fields.items():
        lines = [("  %s: %s" % (key, value)) if line.strip().startswith(key + ":") else line for line in lines]
    return "\n".join(lines) + "\n"


def test_zone_info_is_read_as_key_and_value():
    info = firewalld_info(PUBLIC)
    assert info["target"] == "default"
    assert info["services"] == "dhcpv6-client ssh"
    assert info["ports"] == ""
    assert "rich rules" not in info  # not a key firewalld_plan reads; a key never has a space
    assert "public" not in info


def test_allowed_ports_come_from_ports_protocols_and_services():
    assert firewalld_allowed(zone(ports="9000-9100/tcp 8472/udp"), SERVICES) == [
        "9000-9100/tcp", "8472/udp", "546/udp", "22/tcp"]
    assert firewalld_allowed(zone(protocols="udp")) == ["1-65535/udp"]
    assert firewalld_allowed(zone(target="ACCEPT")) == ["1-65535"]
    # A service whose definition could not be read lets nothing in.
    assert firewalld_allowed(PUBLIC, {}) == []


def test_a_fresh_zone_gets_every_port_opened_and_recorded():
    plan = firewalld_plan(PORTS, "public", firewalld_allowed(PUBLIC, SERVICES))
    assert plan["open"] == ["6443/tcp", "10250/tcp", "8472/udp"]
    assert plan["close"] == []
    assert plan["record"] == {"opened": [{"zone": "public", "port": "6443/tcp"},
                                         {"zone": "public", "port": "10250/tcp"},
                                         {"zone": "public", "port": "8472/udp"}]}
    assert plan["pending"] == plan["record"]


def test_ports_the_site_already_allows_are_neither_opened_nor_recorded():
    allowed = firewalld_allowed(zone(ports="10250/tcp 8000-9000/udp"), SERVICES)
    plan = firewalld_plan(PORTS, "public", allowed)
    assert plan["open"] == ["6443/tcp"]
    assert plan["record"] == {"opened": [{"zone": "public", "port": "6443/tcp"}]}
    # A port without protocol, a zone that accepts everything.
    assert firewalld_plan(PORTS, "public", ["6443", "10250/tcp", "8472/udp"])["open"] == []
    assert firewalld_plan(PORTS, "trusted", firewalld_allowed(zone(target="ACCEPT")))["open"] == []


def test_a_rerun_plans_the_same_and_keeps_its_own_ports():
    first = firewalld_plan(PORTS, "public", firewalld_allowed(PUBLIC, SERVICES))
    # After the first run the zone lists the ports the collection opened.
    after = firewalld_allowed(zone(ports="6443/tcp 10250/tcp 8472/udp"), SERVICES)
    second = firewalld_plan(PORTS, "public", after, first["record"])
    assert second == first


def test_a_port_recorded_but_no_longer_wanted_is_closed():
    recorded = {"opened": [{"zone": "public", "port": "6443/tcp"}, {"zone": "public", "port": "10250/tcp"},
                           {"zone": "public", "port": "8472/udp"}]}
    # The kubelet moved to 10251; the API server is no longer this host's (a worker now).
    ports = [{"port": 10251, "protocol": "tcp"}, {"port": 8472, "protocol": "udp"}]
    plan = firewalld_plan(ports, "public", ["6443/tcp", "10250/tcp", "8472/udp"], recorded)
    assert plan["open"] == ["10251/tcp", "8472/udp"]
    assert plan["close"] == [{"zone": "public", "port": "6443/tcp"}, {"zone": "public", "port": "10250/tcp"}]
    assert plan["record"] == {"opened": [{"zone": "public", "port": "10251/tcp"}, {"zone": "public", "port": "8472/udp"}]}
    # Written first: nothing is forgotten if the run stops between closing and recording.
    assert plan["pending"]["opened"] == plan["record"]["opened"] + plan["close"]


def test_a_zone_change_closes_the_ports_in_the_old_zone():
    recorded = {"opened": [{"zone": "public", "port": "8472/udp"}]}
    plan = firewalld_plan(PORTS[2:], "internal", [], recorded)
    assert plan["open"] == ["8472/udp"]
    assert plan["close"] == [{"zone": "public", "port": "8472/udp"}]
    assert plan["record"] == {"opened": [{"zone": "internal", "port": "8472/udp"}]}


def test_a_port_the_site_allowed_later_by_a_range_is_given_back_to_the_site():
    recorded = {"opened": [{"zone": "public", "port": "8472/udp"}]}
    plan = firewalld_plan(PORTS[2:], "public", ["8472/udp", "8000-9000/udp"], recorded)
    assert plan["open"] == []
    assert plan["close"] == [{"zone": "public", "port": "8472/udp"}]


@pytest.mark.parametrize("recorded", [None, {}, {"opened": "x"}, {"opened": [{"zone": "public"}, "junk"]}, []])
def test_a_damaged_record_counts_as_nothing_recorded(recorded):
    assert firewalld_plan(PORTS[2:], "public", [], recorded)["close"] == []


def test_bad_input_is_named():
    with pytest.raises(FirewallError, match="zone"):
        firewalld_plan(PORTS, "", [])
    with pytest.raises(FirewallError, match="'http' is not a port"):
        firewalld_plan(PORTS, "public", ["http"])


# ufw status verbose (ufw 0.36, Ubuntu 24.04).
UFW = """Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), deny (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
22/tcp                     ALLOW IN    Anywhere
10250/tcp                  ALLOW IN    192.0.2.0/24
6000:6007/tcp              ALLOW IN    Anywhere
OpenSSH                    ALLOW IN    Anywhere
8472/udp                   DENY IN     Anywhere
8472/udp                   ALLOW OUT   Anywhere (out)
22/tcp (v6)                ALLOW IN    Anywhere (v6)
"""


def test_ufw_names_the_ports_it_does_not_let_in():
    assert ufw_missing(UFW, PORTS) == ["6443/tcp", "8472/udp"]
    assert ufw_missing(UFW, [{"port": 6003, "protocol": "tcp"}, {"port": 6003, "protocol": "udp"}]) == ["6003/udp"]


def test_ufw_rules_that_cover_the_ports():
    assert ufw_missing(UFW + "6443                       ALLOW IN    Anywhere\n"
                       "8472/udp on eth0           ALLOW IN    Anywhere\n", PORTS) == []
    assert ufw_missing(UFW + "Anywhere                   ALLOW IN    192.0.2.11\n", PORTS) == []
    assert ufw_missing(UFW.replace("deny (incoming)", "allow (incoming)"), PORTS) == []
    assert ufw_missing(UFW + "6443,8472/udp              ALLOW IN    Anywhere\n", PORTS) == ["6443/tcp"]


IFACE_FACTS = {
    "interfaces": ["lo", "eth0", "br-1a2b"],
    "lo": {"ipv4": {"address": "127.0.0.1"}},
    "eth0": {"ipv4": {"address": "172.30.0.11"}, "ipv4_secondaries": [{"address": "172.30.0.99"}],
             "ipv6": [{"address": "fd00::11", "prefix": "64", "scope": "global"}]},
    "br_1a2b": {"ipv4": {"address": "10.88.0.1"}},
}


@pytest.mark.parametrize(("address", "interface"), [
    ("172.30.0.11", "eth0"), ("172.30.0.99", "eth0"), ("fd00:0::11", "eth0"), ("10.88.0.1", "br-1a2b"),
    ("192.0.2.1", None), ("not-an-address", None),
])
def test_the_interface_of_an_address(address, interface):
    assert interface_of(address, IFACE_FACTS) == interface
