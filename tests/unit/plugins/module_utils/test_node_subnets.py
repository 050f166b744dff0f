# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Node subnet allocation: deterministic, collision-free, stable."""

from __future__ import annotations

import ipaddress
import random
import time
import typing as t

import pytest

from ansible_collections.u7s.cluster.plugins.module_utils import node_subnets
from ansible_collections.u7s.cluster.plugins.module_utils.node_subnets import (
    NodeNetwork,
    NodeNetworkError,
    lowest_free_subnet,
    parse_subnet,
)

POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
# The pool and prefix these tests plan in unless they say otherwise (the collection's
# defaults live in the settings role; the planner takes them as arguments).
POOL = "10.100.0.0/16"
PREFIX = 24


def plan_node_networks(records: t.Any, pool: t.Any = POOL, prefix: t.Any = PREFIX, reserved: t.Any = None,
                       host_addresses: t.Any = None) -> dict[str, NodeNetwork]:
    return node_subnets.plan_node_networks(records, pool, prefix, reserved, host_addresses)


def host(name: str, override: str | None = None, recorded: str | None = None) -> dict[str, t.Any]:
    return {"name": name, "override": override, "recorded": recorded}


def subnets(records: list[dict[str, t.Any]], **kwargs: t.Any) -> dict[str, str]:
    return {name: str(network.subnet) for name, network in plan_node_networks(records, **kwargs).items()}


def sources(records: list[dict[str, t.Any]], **kwargs: t.Any) -> dict[str, str]:
    return {name: network.source for name, network in plan_node_networks(records, **kwargs).items()}


def error(records: t.Any, **kwargs: t.Any) -> str:
    with pytest.raises(NodeNetworkError) as caught:
        plan_node_networks(records, **kwargs)
    return str(caught.value)


def after_first_run(records: list[dict[str, t.Any]], **kwargs: t.Any) -> list[dict[str, t.Any]]:
    """The records of the next run: every host recorded the subnet it got."""
    plan = plan_node_networks(records, **kwargs)
    return [dict(record, recorded=str(plan[record["name"]].subnet)) for record in records]


class TestAllocation:
    def test_hosts_get_the_lowest_free_subnets_in_order(self) -> None:
        assert subnets([host("a"), host("b"), host("c")]) == {
            "a": "10.100.0.0/24", "b": "10.100.1.0/24", "c": "10.100.2.0/24",
        }

    def test_result_keeps_input_order_and_names_addresses(self) -> None:
        plan = plan_node_networks([host("z"), host("a", override="10.100.7.0/24"), host("m")])
        assert list(plan) == ["z", "a", "m"]
        assert plan["a"].as_dict() == {
            "subnet": "10.100.7.0/24", "node_ip": "10.100.7.2", "gateway": "10.100.7.1", "source": "override",
        }
        assert plan["z"].as_dict() == {
            "subnet": "10.100.0.0/24", "node_ip": "10.100.0.2", "gateway": "10.100.0.1", "source": "allocated",
        }

    def test_pool_and_prefix(self) -> None:
        assert subnets([host("a"), host("b")], pool="172.20.0.0/16", prefix=28) == {
            "a": "172.20.0.0/28", "b": "172.20.0.16/28",
        }

    @pytest.mark.parametrize("prefix", ["26", "/26", 26])
    def test_prefix_as_text(self, prefix: t.Any) -> None:
        assert subnets([host("a"), host("b")], prefix=prefix)["b"] == "10.100.0.64/26"

    def test_allocation_skips_overrides_and_recorded(self) -> None:
        records = [host("a"), host("b", override="10.100.0.0/24"), host("c", recorded="10.100.1.0/24"), host("d")]
        assert subnets(records) == {
            "a": "10.100.2.0/24", "b": "10.100.0.0/24", "c": "10.100.1.0/24", "d": "10.100.3.0/24",
        }
        assert sources(records) == {"a": "allocated", "b": "override", "c": "recorded", "d": "allocated"}

    def test_allocation_skips_a_larger_override_and_realigns(self) -> None:
        # An override /23 at 10.100.2.0 and a /26 at 10.100.0.64 block the /24 candidates they touch.
        records = [host("big", override="10.100.2.0/23"), host("small", override="10.100.0.64/26"),
                   host("a"), host("b")]
        assert subnets(records)["a"] == "10.100.1.0/24"
        assert subnets(records)["b"] == "10.100.4.0/24"

    def test_reserved_ranges_are_skipped(self) -> None:
        records = [host("a"), host("b")]
        assert subnets(records, pool="10.96.0.0/12", reserved=[POD_CIDR, SERVICE_CIDR]) == {
            "a": "10.97.0.0/24", "b": "10.97.1.0/24",
        }

    def test_reserved_string_with_several_networks(self) -> None:
        # A dual-stack service CIDR: the IPv6 part cannot collide and is ignored.
        assert subnets([host("a")], reserved="10.100.0.0/23,fd00:10:96::/108")["a"] == "10.100.2.0/24"
        assert subnets([host("a")], reserved=["", None, "10.100.0.0/24"])["a"] == "10.100.1.0/24"

    def test_subnets_containing_a_host_address_are_skipped(self) -> None:
        records = [host("a"), host("b")]
        assert subnets(records, host_addresses=["10.100.0.17", "10.100.2.200"]) == {
            "a": "10.100.1.0/24", "b": "10.100.3.0/24",
        }

    def test_host_address_with_prefix_blocks_its_network(self) -> None:
        assert subnets([host("a")], host_addresses=["10.100.1.5/23"])["a"] == "10.100.2.0/24"

    def test_dns_names_and_ipv6_host_addresses_are_ignored(self) -> None:
        assert subnets([host("a")], host_addresses=["node1.example.org", "2001:db8::1", "", None]) == {
            "a": "10.100.0.0/24",
        }

    def test_empty_override_and_recorded_mean_none(self) -> None:
        assert sources([host("a", override="", recorded="  "), {"name": "b"}]) == {
            "a": "allocated", "b": "allocated",
        }

    def test_override_equal_to_recorded_is_fine(self) -> None:
        plan = plan_node_networks([host("a", override="10.100.9.0/24", recorded="10.100.9.0/24"), host("b")])
        assert (str(plan["a"].subnet), plan["a"].source) == ("10.100.9.0/24", "override")
        assert str(plan["b"].subnet) == "10.100.0.0/24"

    def test_recorded_subnet_outside_the_pool_is_kept(self) -> None:
        plan = plan_node_networks([host("a", recorded="192.168.50.0/24"), host("b")], pool="10.200.0.0/16")
        assert [str(network.subnet) for network in plan.values()] == ["192.168.50.0/24", "10.200.0.0/24"]

    def test_recorded_subnets_that_overlap_each_other_first_one_keeps(self) -> None:
        records = [host("a", recorded="10.100.5.0/24"), host("clone", recorded="10.100.5.0/24")]
        plan = plan_node_networks(records)
        assert (str(plan["a"].subnet), plan["a"].source) == ("10.100.5.0/24", "recorded")
        assert (str(plan["clone"].subnet), plan["clone"].source) == ("10.100.0.0/24", "allocated")

    def test_a_large_pool_is_searched_by_jumping(self) -> None:
        # 2**21 candidates of /29 in a /8: trying each would take seconds.
        started = time.monotonic()
        plan = plan_node_networks([host("a")], pool="10.0.0.0/8", prefix=29, reserved=["10.0.0.0/9", "10.128.0.0/10"])
        assert str(plan["a"].subnet) == "10.192.0.0/29"
        assert "no free /29" in error([host("a")], pool="10.0.0.0/8", prefix=29, reserved=["10.0.0.0/8"])
        assert time.monotonic() - started < 1


class TestStability:
    def test_same_input_same_output(self) -> None:
        records = [host("h%d" % index) for index in range(20)] + [host("x", override="10.100.3.0/24")]
        kwargs = dict(reserved=[POD_CIDR, SERVICE_CIDR], host_addresses=["10.100.5.9"])
        assert plan_node_networks(records, **kwargs) == plan_node_networks(list(records), **kwargs)

    def test_many_hosts_never_collide(self) -> None:
        plan = plan_node_networks([host("node%02d" % index) for index in range(250)])
        networks = [network.subnet for network in plan.values()]
        assert len({network.node_ip for network in plan.values()}) == 250
        assert not any(a.overlaps(b) for index, a in enumerate(networks) for b in networks[:index])

    @pytest.mark.parametrize("seed", range(20))
    def test_adding_a_host_at_the_end_changes_no_earlier_host(self, seed: int) -> None:
        rng = random.Random(seed)
        records = []
        for index in range(rng.randint(1, 12)):
            kind = rng.choice(["plain", "plain", "override"])
            override = "10.100.%d.0/24" % (100 + index) if kind == "override" else None
            records.append(host("h%d" % index, override=override))
        addresses = ["10.100.%d.1" % rng.randint(0, 20)]
        before = plan_node_networks(records, host_addresses=addresses)
        after = plan_node_networks(records + [host("new")], host_addresses=addresses)
        assert {name: after[name] for name in before} == before
        assert after["new"].subnet not in [network.subnet for network in before.values()]

    def test_adding_a_host_in_the_middle_moves_nobody_with_a_recorded_subnet(self) -> None:
        first = [host("a"), host("b"), host("c", override="10.100.1.0/24"), host("d")]
        recorded = after_first_run(first)
        before = plan_node_networks(recorded)
        grown = recorded[:1] + [host("new")] + recorded[1:]
        after = plan_node_networks(grown)
        assert {name: str(after[name].subnet) for name in before} == {
            name: str(network.subnet) for name, network in before.items()
        }
        assert {name: after[name].source for name in "abd"} == {"a": "recorded", "b": "recorded", "d": "recorded"}
        assert str(after["new"].subnet) == "10.100.4.0/24"

    def test_without_records_a_host_in_the_middle_shifts_the_rest(self) -> None:
        """Why records matter: the same insertion moves later hosts on a first run."""
        first = [host("a"), host("b")]
        assert subnets(first[:1] + [host("new")] + first[1:])["b"] != subnets(first)["b"]

    def test_removing_a_host_moves_nobody_with_a_recorded_subnet(self) -> None:
        recorded = after_first_run([host("a"), host("b"), host("c")])
        plan = plan_node_networks([recorded[0], recorded[2], host("d")])
        assert {name: str(network.subnet) for name, network in plan.items()} == {
            "a": "10.100.0.0/24", "c": "10.100.2.0/24", "d": "10.100.1.0/24",
        }

    def test_changing_the_pool_moves_nobody_with_a_recorded_subnet(self) -> None:
        recorded = after_first_run([host("a"), host("b")])
        plan = plan_node_networks(recorded + [host("c")], pool="10.150.0.0/16", prefix=26)
        assert [str(network.subnet) for network in plan.values()] == [
            "10.100.0.0/24", "10.100.1.0/24", "10.150.0.0/26",
        ]


class TestErrors:
    def test_override_with_host_bits_suggests_the_network(self) -> None:
        message = error([host("web1", override="10.100.3.5/24")])
        assert message == (
            "Host web1: u7s_node_subnet 10.100.3.5/24 has host bits set; did you mean the network 10.100.3.0/24? "
            "Fix: correct u7s_node_subnet of host web1."
        )

    def test_recorded_with_host_bits(self) -> None:
        message = error([host("web1", recorded="10.100.3.5/24")])
        assert message == (
            "Host web1: the recorded subnet of its existing node network 10.100.3.5/24 has host bits set; did you "
            "mean the network 10.100.3.0/24? Fix: repair the node state file on host web1 "
            "(~/.local/state/u7s/node.json of the cluster user), which records the subnet its node uses."
        )

    @pytest.mark.parametrize("value", ["10.100.3.0", "garbage", "10.100.300.0/24", "fd00::/64", "10.100.0.0/33"])
    def test_override_that_is_no_ipv4_network(self, value: str) -> None:
        message = error([host("web1", override=value)])
        assert message.startswith("Host web1: u7s_node_subnet %r is not an IPv4 network" % value)
        assert message.endswith("Fix: correct u7s_node_subnet of host web1.")

    @pytest.mark.parametrize("value", ["10.0.0.0/15", "10.100.0.0/30", "10.100.0.0/32"])
    def test_override_prefix_out_of_range(self, value: str) -> None:
        assert "a node subnet must be between /16 and /29" in error([host("web1", override=value)])

    @pytest.mark.parametrize("prefix, expected", [
        (15, "must be between 16 and 29, got 15."),
        (30, "must be between 16 and 29, got 30."),
        ("x", "must be a prefix length such as 24, got 'x'."),
        (True, "must be a prefix length such as 24, got True."),
        (None, "must be a prefix length such as 24, got None."),
    ])
    def test_prefix_out_of_range(self, prefix: t.Any, expected: str) -> None:
        assert error([host("a")], prefix=prefix) == "The node subnet prefix (u7s_node_subnet_prefix) " + expected

    def test_prefix_shorter_than_pool(self) -> None:
        assert error([host("a")], pool="10.100.0.0/20", prefix=18) == (
            "The node subnet prefix /18 is shorter than the pool 10.100.0.0/20; it must be /20 or longer."
        )

    @pytest.mark.parametrize("pool, expected", [
        ("10.100.0.1/16", "10.100.0.1/16 has host bits set; did you mean the network 10.100.0.0/16?"),
        ("fd00::/48", "'fd00::/48' is not an IPv4 network in CIDR notation such as 10.100.0.0/24."),
        ("nonsense", "'nonsense' is not an IPv4 network in CIDR notation such as 10.100.0.0/24."),
        (None, "None is not an IPv4 network in CIDR notation such as 10.100.0.0/24."),
    ])
    def test_invalid_pool(self, pool: t.Any, expected: str) -> None:
        assert error([host("a")], pool=pool) == "The node subnet pool (u7s_node_subnet_pool) " + expected

    def test_invalid_reserved(self) -> None:
        assert "Reserved range 'pods'" in error([host("a")], reserved=["pods"])

    def test_duplicate_hosts(self) -> None:
        assert error([host("a"), host("b"), host("a")]) == "Host a appears more than once in the host records."

    @pytest.mark.parametrize("records, expected", [
        ("a,b", "must be a list"),
        ({"name": "a"}, "must be a list"),
        (["a"], "Host record 1 is not a dictionary but str."),
        ([{"override": "10.100.0.0/24"}], "Host record 1 has no name"),
        ([host("")], "Host record 1 has no name"),
    ])
    def test_malformed_records(self, records: t.Any, expected: str) -> None:
        assert expected in error(records)

    def test_all_validation_problems_are_reported_at_once(self) -> None:
        message = error([host("a", override="10.1.1.1/24"), host("b", recorded="x")], prefix=31)
        assert "Host a: u7s_node_subnet 10.1.1.1/24 has host bits set" in message
        assert "Host b: the recorded subnet" in message
        assert "The node subnet prefix (u7s_node_subnet_prefix) must be between 16 and 29, got 31." in message

    def test_overlapping_overrides_name_both_hosts(self) -> None:
        message = error([host("a", override="10.100.0.0/23"), host("b"), host("c", override="10.100.1.0/24")])
        assert message == (
            "Hosts a and c: their u7s_node_subnet values 10.100.0.0/23 and 10.100.1.0/24 overlap, but every node "
            "needs a subnet of its own. Fix: change u7s_node_subnet on one of them."
        )

    def test_override_that_differs_from_the_recorded_subnet_keeps_the_node(self) -> None:
        message = error([host("a", override="10.100.7.0/24", recorded="10.100.0.0/24")])
        assert message == (
            "Host a: u7s_node_subnet is 10.100.7.0/24, but its existing node network uses 10.100.0.0/24, and an "
            "existing node keeps its subnet. Fix: set u7s_node_subnet on host a to 10.100.0.0/24, or remove it."
        )

    def test_override_over_another_hosts_existing_network(self) -> None:
        message = error([host("old", recorded="10.100.0.0/24"), host("new", override="10.100.0.128/25")])
        assert message == (
            "Host new: u7s_node_subnet 10.100.0.128/25 overlaps 10.100.0.0/24, which the existing node network of "
            "host old uses, and an existing node keeps its subnet. Fix: choose another u7s_node_subnet for host new."
        )

    def test_override_overlapping_a_reserved_range(self) -> None:
        message = error([host("a", override="10.96.4.0/24")], reserved=[POD_CIDR, SERVICE_CIDR])
        assert message == (
            "Host a: u7s_node_subnet 10.96.4.0/24 overlaps the reserved range 10.96.0.0/16. "
            "Fix: set u7s_node_subnet on host a to a subnet outside it."
        )

    def test_override_containing_a_host_address(self) -> None:
        message = error([host("a", override="192.168.1.0/24")], host_addresses=["192.168.1.10"])
        assert message == (
            "Host a: u7s_node_subnet 192.168.1.0/24 overlaps the host address 192.168.1.10. "
            "Fix: set u7s_node_subnet on host a to a subnet outside it."
        )

    def test_recorded_subnet_that_now_overlaps_a_reserved_range(self) -> None:
        message = error([host("a", recorded="10.244.3.0/24")], reserved=[POD_CIDR])
        assert message == (
            "Host a: the recorded subnet of its existing node network 10.244.3.0/24 overlaps the reserved range "
            "10.244.0.0/16, and an existing node keeps its subnet. Fix: change the conflicting range (u7s_pod_cidr, "
            "u7s_service_cidr or the host's address) so that it leaves 10.244.3.0/24 free."
        )

    def test_pool_exhausted(self) -> None:
        records = [host("a"), host("b", override="10.100.1.0/24"), host("c"), host("d"), host("e")]
        message = error(records, pool="10.100.0.0/22", host_addresses=["10.100.3.3"])
        assert message == (
            "The node subnet pool 10.100.0.0/22 has no free /24 left for host d: it holds 4 subnets of /24, "
            "3 node networks already lie in it and reserved ranges or host addresses block the rest; "
            "2 host(s) still need one (d, e). Fix: use a larger pool or a longer prefix, or set u7s_node_subnet "
            "on these hosts."
        )

    def test_conflicts_of_several_hosts_are_reported_together(self) -> None:
        message = error([
            host("a", override="10.100.0.0/24"), host("b", override="10.100.0.0/24"),
            host("c", override="10.100.9.0/24", recorded="10.100.8.0/24"),
        ])
        assert "Hosts a and b" in message and "Host c: u7s_node_subnet is 10.100.9.0/24" in message

    @pytest.mark.parametrize("records, kwargs", [
        ([host("a", override="10.100.3.5/24")], {}),
        ([host("a", override="garbage")], {}),
        ([host("a", override="10.0.0.0/15")], {}),
        ([host("a", recorded="10.100.3.5/24")], {}),
        ([host("a", recorded="10.0.0.0/30")], {}),
        ([host("a")], {"prefix": 30}),
        ([host("a")], {"prefix": "x"}),
        ([host("a")], {"pool": "10.100.0.0/20", "prefix": 18}),
        ([host("a")], {"pool": "nonsense"}),
        ([host("a")], {"reserved": ["pods"]}),
        ([host("a"), host("a")], {}),
        (["a"], {}),
        ([host("a", override="10.100.0.0/23"), host("b", override="10.100.1.0/24")], {}),
        ([host("a", override="10.100.7.0/24", recorded="10.100.0.0/24")], {}),
        ([host("old", recorded="10.100.0.0/24"), host("new", override="10.100.0.128/25")], {}),
        ([host("a", override="10.96.4.0/24")], {"reserved": [SERVICE_CIDR]}),
        ([host("a", override="192.168.1.0/24")], {"host_addresses": ["192.168.1.10"]}),
        ([host("a", recorded="10.244.3.0/24")], {"reserved": [POD_CIDR]}),
        ([host("a", recorded="10.100.0.0/24")], {"host_addresses": ["10.100.0.0/23"]}),
        ([host("a"), host("b")], {"pool": "10.100.0.0/24"}),
    ], ids=[
        "override-host-bits", "override-garbage", "override-prefix", "recorded-host-bits", "recorded-prefix",
        "prefix-range", "prefix-text", "prefix-shorter-than-pool", "pool", "reserved", "duplicate-host",
        "malformed-record", "overrides-overlap", "override-moves-node", "override-over-recorded",
        "override-reserved", "override-host-address", "recorded-reserved", "recorded-host-network", "exhausted",
    ])
    def test_no_message_advises_resetting_a_node(self, records: t.Any, kwargs: dict[str, t.Any]) -> None:
        """A working node is never reset to make a plan: every fix leaves it (and its subnet) alone."""
        message = error(records, **kwargs)
        assert "reset" not in message.lower()
        assert "remove the node" not in message.lower() and "removed first" not in message.lower()


class TestHelpers:
    def test_parse_subnet(self) -> None:
        assert parse_subnet(" 10.1.0.0/16 ", "x") == ipaddress.IPv4Network("10.1.0.0/16")
        assert parse_subnet("10.1.0.0/255.255.0.0", "x") == ipaddress.IPv4Network("10.1.0.0/16")

    def test_lowest_free_subnet(self) -> None:
        pool = ipaddress.IPv4Network("10.0.0.0/24")
        taken = [ipaddress.IPv4Network(text) for text in ("10.0.0.0/27", "10.0.0.40/32", "10.0.0.64/26")]
        assert lowest_free_subnet(pool, 27, taken) == ipaddress.IPv4Network("10.0.0.128/27")
        assert lowest_free_subnet(pool, 29, taken) == ipaddress.IPv4Network("10.0.0.32/29")
        assert lowest_free_subnet(pool, 24, taken) is None
        assert lowest_free_subnet(ipaddress.IPv4Network("255.255.255.0/24"), 25,
                                  [ipaddress.IPv4Network("255.255.255.0/24")]) is None


# ---------------------------------------------------------------- the fast plan against a naive one


def reference_plan(
    records: t.Any, pool: t.Any, prefix: t.Any, reserved: t.Any = None, host_addresses: t.Any = None
) -> dict[str, NodeNetwork]:
    """plan_node_networks as its first version made it: compare every pair, try every candidate.

    The oracle for the indexed, single-pass implementation. It shares the
    input parsing and the wording of the problems (the message tests above
    check those) and nothing of the search: every override against every
    earlier one, every recorded subnet against every network kept so far,
    every given subnet against every blocker, and for each host in turn a search
    from the pool's start among everything taken so far, by lowest_free_subnet
    (which test_lowest_free_subnet_is_the_first_free_candidate checks against
    trying every candidate).
    """
    hosts, pool_network, prefix_length, blockers = node_subnets._parse_plan_input(
        records, pool, prefix, reserved, host_addresses
    )
    problems: list[str] = []
    plan: dict[str, NodeNetwork] = {}
    overrides = [record for record in hosts if record.override is not None]
    for index, record in enumerate(overrides):
        problems.extend(
            node_subnets._overrides_overlap_problem(earlier, record)
            for earlier in overrides[:index] if earlier.override.overlaps(record.override)
        )
        plan[record.name] = NodeNetwork(record.override, node_subnets.SOURCE_OVERRIDE)
    for record in hosts:
        if record.recorded is None:
            continue
        if record.override is not None:
            if record.override != record.recorded:
                problems.append(node_subnets._override_moves_node_problem(record))
            continue
        clash = [other for other in overrides if other.override.overlaps(record.recorded)]
        problems.extend(node_subnets._override_over_recorded_problem(other, record) for other in clash)
        if not clash and not any(kept.subnet.overlaps(record.recorded) for kept in plan.values()):
            plan[record.name] = NodeNetwork(record.recorded, node_subnets.SOURCE_RECORDED)
    for record in hosts:
        labels = [blocker.label for blocker in blockers
                  if record.name in plan and blocker.network.overlaps(plan[record.name].subnet)]
        if labels:
            problems.append(node_subnets._blocked_problem(record, labels))
    if problems:
        raise NodeNetworkError(" ".join(problems))
    pending = [record for record in hosts if record.name not in plan]
    for index, record in enumerate(pending):
        taken = [network.subnet for network in plan.values()] + [blocker.network for blocker in blockers]
        subnet = lowest_free_subnet(pool_network, prefix_length, taken)
        if subnet is None:
            raise NodeNetworkError(node_subnets._exhausted(pool_network, prefix_length, plan, pending[index:]))
        plan[record.name] = NodeNetwork(subnet, node_subnets.SOURCE_ALLOCATED)
    return {record.name: plan[record.name] for record in hosts}


def outcome(plan: t.Callable[..., dict[str, NodeNetwork]], *args: t.Any) -> tuple[str, t.Any]:
    """The plan as a list of (host, network) in order, or the error message."""
    try:
        return "plan", list(plan(*args).items())
    except NodeNetworkError as exc:
        return "error", str(exc)


def random_network(rng: random.Random) -> str:
    """A subnet in or around 10.100.0.0/20, of a few sizes, sometimes overlapping others."""
    length = rng.choice([22, 23, 24, 24, 24, 25, 26, 28])
    address = ipaddress.IPv4Address("10.100.0.0") + rng.randrange(0, 1 << 13)
    return str(ipaddress.IPv4Network((address, length), strict=False))


def random_inventory(rng: random.Random) -> tuple[t.Any, ...]:
    records = []
    for index in range(rng.randint(0, 14)):
        record: dict[str, t.Any] = {"name": "h%d" % index}
        if rng.random() < 0.12:
            record["override"] = random_network(rng)
        if rng.random() < 0.3:
            record["recorded"] = record.get("override") if rng.random() < 0.2 else random_network(rng)
        records.append(record)
    if records and rng.random() < 0.2:  # a cloned host with the same state file
        records.append(dict(rng.choice(records), name="clone", override=None))
    pool = rng.choice(["10.100.0.0/20", "10.100.0.0/21", "10.100.4.0/22", "10.96.0.0/12"])
    prefix = rng.choice([22, 24, 24, 25, 27])
    reserved = rng.sample(["10.96.0.0/16", "10.100.4.0/23", "10.100.9.0/24", "10.100.12.0/22"], rng.randint(0, 2))
    addresses = ["10.100.%d.%d" % (rng.randrange(16), rng.randrange(256)) for _draw in range(rng.randint(0, 5))]
    if addresses and rng.random() < 0.3:
        addresses.append(addresses[0])  # two hosts behind one address
    if rng.random() < 0.2:
        addresses.append("10.100.%d.5/23" % rng.randrange(16))
    return records, pool, prefix, reserved, addresses


class TestAgainstReference:
    def test_random_inventories_plan_alike(self) -> None:
        kinds = {"plan": 0, "error": 0}
        for seed in range(1500):
            inventory = random_inventory(random.Random(seed))
            expected = outcome(reference_plan, *inventory)
            assert outcome(plan_node_networks, *inventory) == expected, (seed, inventory)
            kinds[expected[0]] += 1
        # Both plans and refusals were compared, not only one of them.
        assert min(kinds.values()) > 300, kinds

    @pytest.mark.parametrize("count", [300, 1200])
    def test_many_hosts_with_overrides_recorded_and_shared_addresses(self, count: int) -> None:
        rng = random.Random(count)
        records = []
        for index in range(count):
            record: dict[str, t.Any] = {"name": "node%d" % index}
            if index % 97 == 5:
                record["override"] = "10.101.%d.0/24" % (index % 256)
            elif index % 13 == 0:
                record["recorded"] = "10.100.%d.0/24" % rng.randrange(64)  # some clones among them
            records.append(record)
        addresses = ["10.100.%d.%d" % (rng.randrange(64, 72), rng.randrange(256)) for _draw in range(count // 10)]
        addresses += ["10.100.%d.%d" % (rng.randrange(64, 72), rng.randrange(256)) for _draw in range(3)] * 2
        inventory = (records, "10.96.0.0/12", 24, [SERVICE_CIDR, "10.100.80.0/21"], addresses)
        expected = outcome(reference_plan, *inventory)
        assert expected[0] == "plan"
        assert outcome(plan_node_networks, *inventory) == expected

    @pytest.mark.parametrize("seed", range(200))
    def test_lowest_free_subnet_is_the_first_free_candidate(self, seed: int) -> None:
        rng = random.Random(seed)
        pool = ipaddress.IPv4Network("10.0.%d.0/24" % rng.randrange(256))
        prefix = rng.randint(24, 30)
        taken = [ipaddress.IPv4Network((int(pool.network_address) + rng.randrange(-64, 320), rng.randint(22, 32)),
                                       strict=False) for _draw in range(rng.randint(0, 10))]
        expected = next((candidate for candidate in pool.subnets(new_prefix=prefix)
                         if not any(candidate.overlaps(network) for network in taken)), None)
        assert lowest_free_subnet(pool, prefix, taken) == expected

    @pytest.mark.parametrize("seed", range(100))
    def test_overlap_index_finds_every_overlapping_network(self, seed: int) -> None:
        rng = random.Random(seed)
        networks = [ipaddress.IPv4Network((0x0A000000 + rng.randrange(1 << 12), rng.randint(18, 32)), strict=False)
                    for _draw in range(rng.randint(0, 30))]
        queries = [ipaddress.IPv4Network((0x0A000000 + rng.randrange(1 << 12), rng.randint(18, 32)), strict=False)
                   for _draw in range(20)]
        index = node_subnets._index(networks, [query.prefixlen for query in queries])
        for query in queries:
            assert index.overlapping(query) == [
                number for number, network in enumerate(networks) if network.overlaps(query)
            ]

    def test_ten_thousand_hosts_take_well_under_seconds(self) -> None:
        # The pairwise version took about 10 s for 1,000 hosts; bench/plan.py measures properly.
        records = [host("node%d" % index) for index in range(10000)]
        addresses = ["172.16.%d.%d" % (index // 250, index % 250 + 1) for index in range(10000)]
        started = time.monotonic()
        plan = plan_node_networks(records, pool="10.64.0.0/10", reserved=[POD_CIDR, SERVICE_CIDR],
                                  host_addresses=addresses)
        assert time.monotonic() - started < 3
        assert str(plan["node9999"].subnet) == "10.104.15.0/24"  # past the service CIDR
