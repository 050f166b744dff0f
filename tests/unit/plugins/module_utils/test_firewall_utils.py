# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The host firewall's nftables file (pure logic; loaded for real on the test bed by molecule's tests)."""

from __future__ import annotations

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils.firewall import FirewallError, nft_ruleset, table_name

PORTS = [{"port": 6443, "protocol": "tcp", "sources": "apiserver"},
         {"port": 10250, "protocol": "tcp", "sources": "cluster"},
         {"port": 8472, "protocol": "udp", "sources": "cluster"}]
HOSTS = ["192.0.2.12", "192.0.2.11", "192.0.2.11"]


def rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "dport" in line]


def set_elements(text: str, name: str) -> str | None:
    lines = text.splitlines()
    start = lines.index("\tset %s {" % name)
    for line in lines[start:]:
        if line.strip().startswith("elements"):
            return line.strip()
        if line.strip() == "}":
            return None
    return None


def test_each_port_accepts_its_sources_and_drops_the_rest():
    text = nft_ruleset("u7s", PORTS, HOSTS, ["203.0.113.0/24", "2001:db8::1"])
    assert rules(text) == [
        "tcp dport 6443 ip saddr @apiserver_v4 accept",
        "tcp dport 6443 ip6 saddr @apiserver_v6 accept",
        'tcp dport 6443 counter drop comment "not from the API server\'s sources"',
        "tcp dport 10250 ip saddr @cluster_v4 accept",
        "tcp dport 10250 ip6 saddr @cluster_v6 accept",
        'tcp dport 10250 counter drop comment "not from the cluster\'s hosts"',
        "udp dport 8472 ip saddr @cluster_v4 accept",
        "udp dport 8472 ip6 saddr @cluster_v6 accept",
        'udp dport 8472 counter drop comment "not from the cluster\'s hosts"',
    ]
    # Addresses once each, sorted; the API server's sources include the cluster's hosts.
    assert set_elements(text, "cluster_v4") == "elements = { 192.0.2.11/32, 192.0.2.12/32 }"
    assert set_elements(text, "cluster_v6") is None
    assert set_elements(text, "apiserver_v4") == "elements = { 192.0.2.11/32, 192.0.2.12/32, 203.0.113.0/24 }"
    assert set_elements(text, "apiserver_v6") == "elements = { 2001:db8::1/128 }"


def test_the_table_is_replaced_in_one_file_and_only_narrows():
    text = nft_ruleset("u7s", PORTS, HOSTS)
    lines = text.splitlines()
    body = [line for line in lines if not line.startswith("#")]
    assert body[:3] == ["table inet u7s_u7s", "delete table inet u7s_u7s", "table inet u7s_u7s {"]
    assert "\t\ttype filter hook input priority filter - 10; policy accept;" in lines
    assert '\t\tiif "lo" accept' in lines
    # Nothing but the listed ports is ever dropped.
    assert [line for line in lines if "drop" in line and "dport" not in line] == []
    assert text.endswith("}\n")


def test_a_host_without_filtered_ports_gets_an_empty_chain():
    assert rules(nft_ruleset("u7s", [], HOSTS)) == []


@pytest.mark.parametrize(("user", "table"), [("u7s", "u7s_u7s"), ("alice_2", "u7s_alice_2")])
def test_table_names(user, table):
    assert table_name(user) == table


def test_users_that_fold_to_one_name_keep_distinct_tables():
    assert table_name("a.b") != table_name("a_b")
    assert table_name("a.b") != table_name("a-b")
    assert table_name("a.b").startswith("u7s_a_b_")


@pytest.mark.parametrize(("arguments", "message"), [
    (("", PORTS, HOSTS), "non-empty string"),
    (("u7s", "6443", HOSTS), "must be a list"),
    (("u7s", [6443], HOSTS), "Port 1 is not a dictionary"),
    (("u7s", [{"port": 70000, "sources": "cluster"}], HOSTS), "is not a port number"),
    (("u7s", [{"port": True, "sources": "cluster"}], HOSTS), "is not a port number"),
    (("u7s", [{"port": 1, "protocol": "sctp", "sources": "cluster"}], HOSTS), "not tcp or udp"),
    (("u7s", [{"port": 1, "sources": "everyone"}], HOSTS), "sources 'everyone'"),
    (("u7s", PORTS, ["host1"]), "'host1', which is neither an address nor a network"),
    (("u7s", PORTS, HOSTS, ["admins"]), "'admins'"),
])
def test_bad_input_is_named(arguments, message):
    with pytest.raises(FirewallError, match=message.replace("(", r"\(")):
        nft_ruleset(*arguments)
