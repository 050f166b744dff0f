# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Published-port checks: invalid and privileged ports, and ports published twice."""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils.ports import port_conflicts

DEFAULT_PORTS = {"etcd": 2379, "apiserver": 6443, "kubelet": 10250, "vxlan": 8472}
UDP = {"vxlan": "udp"}


def ports_record(name: str, user: str, address: str = "192.0.2.10", **ports: t.Any) -> dict[str, t.Any]:
    return {"name": name, "user": user, "address": address, "ports": dict(DEFAULT_PORTS, **ports)}


class TestPortConflicts:
    def test_default_ports_of_one_host_are_fine(self) -> None:
        assert port_conflicts([ports_record("n1", "u7s")], UDP) == []

    def test_two_keys_of_one_host_with_the_same_port(self) -> None:
        assert port_conflicts([ports_record("n1", "alice", kubelet=6443)], UDP) == [
            "host n1 (user alice): the apiserver and kubelet ports are both 6443/tcp. "
            "Fix: give one of them another port."
        ]

    def test_same_number_on_tcp_and_udp_is_no_conflict(self) -> None:
        assert port_conflicts([ports_record("n1", "alice", etcd=8472)], UDP) == []
        # Without the protocol mapping every key is tcp, so then they collide.
        assert len(port_conflicts([ports_record("n1", "alice", etcd=8472)])) == 1

    def test_two_users_on_one_address(self) -> None:
        records = [
            ports_record("n1-alice", "alice"),
            ports_record("n1-bob", "bob", etcd=12379, apiserver=16443, kubelet=20250, vxlan=18472),
            ports_record("n1-carol", "carol", etcd=16443, apiserver=26443, kubelet=30250, vxlan=8472),
        ]
        assert port_conflicts(records, UDP) == [
            "Port 16443/tcp on address 192.0.2.10 is published twice: by host n1-bob (user bob) as its apiserver "
            "port and by host n1-carol (user carol) as its etcd port. Fix: give one of them another port.",
            "Port 8472/udp on address 192.0.2.10 is published twice: by host n1-alice (user alice) as its vxlan "
            "port and by host n1-carol (user carol) as its vxlan port. Fix: give one of them another port.",
        ]

    def test_different_addresses_do_not_conflict(self) -> None:
        records = [ports_record("n1", "u7s"), ports_record("n2", "u7s", address="192.0.2.11")]
        assert port_conflicts(records, UDP) == []

    def test_addresses_compare_normalized(self) -> None:
        for first, second in (("2001:db8::1", "2001:DB8:0::1"), ("Node1.Example.", "node1.example"),
                              (" 192.0.2.10", "192.0.2.10")):
            records = [ports_record("a", "alice", address=first), ports_record("b", "bob", address=second)]
            assert len(port_conflicts(records, UDP)) == 4

    def test_records_without_address_are_not_compared(self) -> None:
        records = [ports_record("a", "alice", address=None), ports_record("b", "bob", address="")]
        assert port_conflicts(records, UDP) == []

    @pytest.mark.parametrize("value", [0, 65536, -1, "https", True, 6443.0, None, [6443]])
    def test_invalid_port_numbers(self, value: t.Any) -> None:
        assert port_conflicts([ports_record("n1", "alice", apiserver=value)], UDP) == [
            "host n1 (user alice): the apiserver port is %r; a port must be an integer from 1 to 65535. "
            "Fix: set a valid port." % (value,)
        ]

    def test_digit_strings_are_ports(self) -> None:
        assert port_conflicts([ports_record("n1", "alice", apiserver="6443", kubelet=" 6443 ")], UDP) == [
            "host n1 (user alice): the apiserver and kubelet ports are both 6443/tcp. "
            "Fix: give one of them another port."
        ]

    def test_privileged_ports(self) -> None:
        record = ports_record("n1", "alice", apiserver=443)
        assert port_conflicts([record], UDP) == [
            "host n1 (user alice): the apiserver port 443/tcp is below net.ipv4.ip_unprivileged_port_start (1024), "
            "so the rootless engine cannot bind it. Fix: choose a port from 1024 on."
        ]
        assert port_conflicts([dict(record, unprivileged_port_start=443)], UDP) == []
        assert port_conflicts([dict(record, unprivileged_port_start="0")], UDP) == []
        assert port_conflicts([dict(record, unprivileged_port_start=None)], UDP) != []
        higher = port_conflicts([dict(ports_record("n1", "alice"), unprivileged_port_start=2380)], UDP)
        assert len(higher) == 1 and "the etcd port 2379/tcp is below" in higher[0] and "(2380)" in higher[0]

    def test_user_is_optional_in_messages(self) -> None:
        record = {"name": "n1", "ports": {"a": 5000, "b": 5000}}
        assert port_conflicts([record])[0].startswith("host n1: the a and b ports")

    def test_empty_input(self) -> None:
        assert port_conflicts([]) == []
        assert port_conflicts([{"name": "n1", "ports": {}}]) == []

    @pytest.mark.parametrize("records, protocols, expected", [
        ("n1", None, "must be a list"),
        (["n1"], None, "Port record 1 is not a dictionary"),
        ([{"name": "n1", "ports": [2379]}], None, "The ports of host n1 must be a dictionary"),
        ([{"name": "n1", "ports": {}, "unprivileged_port_start": "low"}], None, "unprivileged_port_start"),
        ([], {"vxlan": "sctp"}, "must be tcp or udp"),
        ([], ["vxlan"], "The protocols must be a dictionary"),
    ])
    def test_malformed_input(self, records: t.Any, protocols: t.Any, expected: str) -> None:
        with pytest.raises(ValueError, match=expected):
            port_conflicts(records, protocols)
