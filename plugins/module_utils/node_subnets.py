# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Decide each host's node network.

Pure logic on plain data, no I/O; the cluster model
(:mod:`cluster_model`, the ``u7s.cluster.cluster_plan`` action) calls
:func:`plan_node_networks` on the controller.

Every host runs its node container on a user-defined container network of its
own. The node IPs must be distinct across the cluster, so every host needs a
subnet that overlaps no other host's, none of the cluster's pod and service
CIDRs and none of the hosts' own addresses. Upstream derives one byte from a
hash of the hostname, which collides for about half of all 20-host clusters;
here the subnets are allocated in inventory order, lowest free first, and a
subnet a host already uses (recorded in a state file on the host) is kept, so
changing the inventory never moves an existing node.

Host records (one per host, in inventory order)::

    {
        "name": "node1",              # inventory hostname
        "override": "10.100.7.0/24",  # the host's u7s_node_subnet; None or "" for none
        "recorded": "10.100.0.0/24",  # subnet of the existing node network; None without one
    }
"""

from __future__ import annotations

import bisect
import ipaddress
import typing as t
from collections.abc import Mapping, Sequence, Set as AbstractSet

from ansible_collections.u7s.cluster.plugins.module_utils.values import is_empty

MIN_PREFIX = 16
MAX_PREFIX = 29
# Per-host inventory variable that sets a node subnet by hand.
SUBNET_VARIABLE = "u7s_node_subnet"
# The settings behind the pool and the prefix.
POOL_VARIABLE = "u7s_node_subnet_pool"
PREFIX_VARIABLE = "u7s_node_subnet_prefix"

SOURCE_OVERRIDE = "override"
SOURCE_RECORDED = "recorded"
SOURCE_ALLOCATED = "allocated"


class NodeNetworkError(ValueError):
    """No plan can be made; the message names the hosts and what to change."""


class NodeNetwork(t.NamedTuple):
    """The node network one host gets."""

    subnet: ipaddress.IPv4Network
    source: str

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The engine's bridge address: the first address of the subnet."""
        return self.subnet.network_address + 1

    @property
    def node_ip(self) -> ipaddress.IPv4Address:
        """The node container's address: the address after the gateway."""
        return self.subnet.network_address + 2

    def as_dict(self) -> dict[str, str]:
        """Plain strings, as the filter returns them."""
        return {
            "subnet": str(self.subnet),
            "node_ip": str(self.node_ip),
            "gateway": str(self.gateway),
            "source": self.source,
        }


class HostRecord(t.NamedTuple):
    """One host's input, parsed."""

    name: str
    override: t.Optional[ipaddress.IPv4Network]
    recorded: t.Optional[ipaddress.IPv4Network]


class Blocker(t.NamedTuple):
    """Addresses no allocated subnet may overlap, and how to name them in messages."""

    network: ipaddress.IPv4Network
    label: str


def _parse_prefix(value: t.Any, what: str) -> int:
    """A prefix length given as 24, "24" or "/24"."""
    if isinstance(value, bool):
        raise NodeNetworkError("%s must be a prefix length such as 24, got %r." % (what, value))
    if isinstance(value, int):
        return value
    text = str(value).strip().lstrip("/")
    if not (text.isascii() and text.isdecimal()):
        raise NodeNetworkError("%s must be a prefix length such as 24, got %r." % (what, value))
    return int(text)


def parse_subnet(value: t.Any, subject: str) -> ipaddress.IPv4Network:
    """An IPv4 network in CIDR notation with its host bits zero; ``subject`` starts each message.

    Raises NodeNetworkError, which suggests the network meant when host bits are set.
    """
    text = str(value).strip()
    not_a_network = NodeNetworkError(
        "%s %r is not an IPv4 network in CIDR notation such as 10.100.0.0/24." % (subject, value)
    )
    if "/" not in text:
        raise not_a_network
    try:
        network = ipaddress.ip_network(text)
    except ValueError:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise not_a_network from None
        if isinstance(network, ipaddress.IPv4Network):
            raise NodeNetworkError(
                "%s %s has host bits set; did you mean the network %s?" % (subject, text, network)
            ) from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise not_a_network
    return network


def _check_node_prefix(network: ipaddress.IPv4Network, subject: str) -> list[str]:
    if MIN_PREFIX <= network.prefixlen <= MAX_PREFIX:
        return []
    return [
        "%s %s is a /%d; a node subnet must be between /%d and /%d."
        % (subject, network, network.prefixlen, MIN_PREFIX, MAX_PREFIX)
    ]


def _override_subject(name: str) -> str:
    return "Host %s: %s" % (name, SUBNET_VARIABLE)


def _recorded_subject(name: str) -> str:
    return "Host %s: the recorded subnet of its existing node network" % name


def _record_fix(key: str, name: str) -> str:
    if key == "override":
        return " Fix: correct %s of host %s." % (SUBNET_VARIABLE, name)
    return (" Fix: repair the node state file on host %s (~/.local/state/u7s/node.json of the cluster user), "
            "which records the subnet its node uses." % name)


def parse_host_records(records: t.Any) -> list[HostRecord]:
    """Parse and check every record; one NodeNetworkError lists all problems."""
    if isinstance(records, (str, bytes)) or not isinstance(records, Sequence):
        raise NodeNetworkError(
            "The host records must be a list of dictionaries, got %s." % type(records).__name__
        )
    problems: list[str] = []
    parsed: list[HostRecord] = []
    seen: set[str] = set()
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            problems.append("Host record %d is not a dictionary but %s." % (index + 1, type(record).__name__))
            continue
        name = record.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append("Host record %d has no name (the inventory hostname)." % (index + 1))
            continue
        if name in seen:
            problems.append("Host %s appears more than once in the host records." % name)
            continue
        seen.add(name)
        networks: list[t.Optional[ipaddress.IPv4Network]] = []
        for key, subject in (("override", _override_subject(name)), ("recorded", _recorded_subject(name))):
            value = record.get(key)
            if is_empty(value):
                networks.append(None)
                continue
            try:
                network = parse_subnet(value, subject)
            except NodeNetworkError as exc:
                problems.append(str(exc) + _record_fix(key, name))
                networks.append(None)
                continue
            problems.extend(problem + _record_fix(key, name) for problem in _check_node_prefix(network, subject))
            networks.append(network)
        parsed.append(HostRecord(name, networks[0], networks[1]))
    if problems:
        raise NodeNetworkError(" ".join(problems))
    return parsed


def _parse_reserved(reserved: t.Any) -> list[Blocker]:
    blockers = []
    for value in _as_list(reserved, "reserved"):
        if is_empty(value):
            continue
        try:
            network = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            raise NodeNetworkError(
                "Reserved range %r is not a network in CIDR notation such as 10.96.0.0/12." % (value,)
            ) from None
        if isinstance(network, ipaddress.IPv4Network):
            blockers.append(Blocker(network, "the reserved range %s" % network))
    return blockers


def _parse_host_addresses(addresses: t.Any) -> list[Blocker]:
    blockers = []
    for value in _as_list(addresses, "host_addresses"):
        if is_empty(value):
            continue
        text = str(value).strip()
        try:
            interface = ipaddress.ip_interface(text)
        except ValueError:
            continue  # A DNS name (ansible_host may be one): nothing to avoid.
        if not isinstance(interface, ipaddress.IPv4Interface):
            continue
        if "/" in text and interface.network.prefixlen < 32:
            label = "the host network %s (of host address %s)" % (interface.network, interface.ip)
        else:
            label = "the host address %s" % interface.ip
        blockers.append(Blocker(interface.network, label))
    return blockers


def _as_list(value: t.Any, what: str) -> list[t.Any]:
    """A list of entries; strings are split at commas (dual-stack CIDRs come as "v4,v6")."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (Sequence, AbstractSet)):
        raise NodeNetworkError("%s must be a list, got %s." % (what, type(value).__name__))
    entries: list[t.Any] = []
    for item in value:
        entries.extend(item.split(",") if isinstance(item, str) else [item])
    return entries


def _span(network: ipaddress.IPv4Network) -> tuple[int, int]:
    """First and last address of the network, as integers."""
    start = int(network.network_address)
    return start, start + (1 << (32 - network.prefixlen)) - 1


def _mask(prefix: int) -> int:
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF


class _OverlapIndex:
    """Numbered CIDR networks, found again by overlap in a few dictionary lookups.

    Two CIDR networks overlap only when one contains the other. So the networks
    that overlap X are those at X's own address under X's prefix length or a
    shorter one (X lies in them) and those that lie in X, which were filed under
    X when they were added. Only the prefix lengths in ``query_lengths`` can be
    looked up, so a network is filed under its supernets of those lengths only.
    """

    def __init__(self, query_lengths: t.Iterable[int]) -> None:
        self._query_lengths = sorted(set(query_lengths))
        self._lengths: list[int] = []
        self._at: dict[tuple[int, int], list[int]] = {}
        self._inside: dict[tuple[int, int], list[int]] = {}

    def add(self, network: ipaddress.IPv4Network, number: int) -> None:
        prefix, start = network.prefixlen, int(network.network_address)
        if prefix not in self._lengths:
            bisect.insort(self._lengths, prefix)
        self._at.setdefault((prefix, start), []).append(number)
        for length in self._query_lengths:
            if length >= prefix:
                break
            self._inside.setdefault((length, start & _mask(length)), []).append(number)

    def overlapping(self, network: ipaddress.IPv4Network) -> list[int]:
        """The numbers of the networks that overlap network, ascending."""
        prefix, start = network.prefixlen, int(network.network_address)
        if prefix not in self._query_lengths:
            raise ValueError("/%d is not one of the prefix lengths this index answers for" % prefix)
        found = list(self._inside.get((prefix, start), ()))
        for length in self._lengths:
            if length > prefix:
                break
            found.extend(self._at.get((length, start & _mask(length)), ()))
        return sorted(found)


def _index(networks: t.Sequence[ipaddress.IPv4Network], query_lengths: t.Iterable[int]) -> _OverlapIndex:
    """An _OverlapIndex of networks, each numbered by its position."""
    index = _OverlapIndex(query_lengths)
    for number, network in enumerate(networks):
        index.add(network, number)
    return index


def _free_subnets(
    pool: ipaddress.IPv4Network, prefix: int, taken: t.Iterable[ipaddress.IPv4Network]
) -> t.Iterator[int]:
    """First addresses of the /prefix subnets of pool that overlap none of taken, lowest first.

    Sorts the taken ranges once and walks them alongside the candidates, jumping
    past each blocking range, so the cost grows with the number of ranges and
    subnets handed out, not with the size of the pool.
    """
    size = 1 << (32 - prefix)
    spans = sorted(_span(network) for network in taken)
    candidate, last = _span(pool)
    next_span = 0
    while candidate + size - 1 <= last:
        # Ranges that end below the candidate block no later candidate either.
        while next_span < len(spans) and spans[next_span][1] < candidate:
            next_span += 1
        if next_span < len(spans) and spans[next_span][0] <= candidate + size - 1:
            # The next candidate aligned to the subnet size after the blocking range.
            candidate = (spans[next_span][1] // size + 1) * size
            continue
        yield candidate
        candidate += size


def lowest_free_subnet(
    pool: ipaddress.IPv4Network, prefix: int, taken: t.Iterable[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network | None:
    """The lowest /prefix subnet of pool that overlaps none of taken, None when there is none.

    Jumps past each blocking range instead of trying every candidate, so a
    large pool costs no more than a small one.
    """
    start = next(_free_subnets(pool, prefix, taken), None)
    return None if start is None else ipaddress.IPv4Network((start, prefix))


def _parse_plan_input(
    records: t.Any, pool: t.Any, prefix: t.Any, reserved: t.Any, host_addresses: t.Any
) -> tuple[list[HostRecord], ipaddress.IPv4Network, int, list[Blocker]]:
    """Step 1 of plan_node_networks: parse and check everything, one NodeNetworkError with all problems."""
    problems: list[str] = []
    try:
        hosts = parse_host_records(records)
    except NodeNetworkError as exc:
        problems.append(str(exc))
        hosts = []
    try:
        prefix_length = _parse_prefix(prefix, "The node subnet prefix (%s)" % PREFIX_VARIABLE)
        if not MIN_PREFIX <= prefix_length <= MAX_PREFIX:
            raise NodeNetworkError(
                "The node subnet prefix (%s) must be between %d and %d, got %d."
                % (PREFIX_VARIABLE, MIN_PREFIX, MAX_PREFIX, prefix_length)
            )
    except NodeNetworkError as exc:
        problems.append(str(exc))
        prefix_length = None
    try:
        pool_network: ipaddress.IPv4Network | None = parse_subnet(pool, "The node subnet pool (%s)" % POOL_VARIABLE)
    except NodeNetworkError as exc:
        problems.append(str(exc))
        pool_network = None
    if pool_network is not None and prefix_length is not None and prefix_length < pool_network.prefixlen:
        problems.append(
            "The node subnet prefix /%d is shorter than the pool %s; it must be /%d or longer."
            % (prefix_length, pool_network, pool_network.prefixlen)
        )
    try:
        blockers = _parse_reserved(reserved) + _parse_host_addresses(host_addresses)
    except NodeNetworkError as exc:
        problems.append(str(exc))
        blockers = []
    if problems or pool_network is None or prefix_length is None:
        raise NodeNetworkError(" ".join(problems))
    return hosts, pool_network, prefix_length, blockers


# The problems of subnets taken as given, one function each, so that every check words them alike.


def _overrides_overlap_problem(first: HostRecord, second: HostRecord) -> str:
    return (
        "Hosts %s and %s: their %s values %s and %s overlap, but every node needs a "
        "subnet of its own. Fix: change %s on one of them."
        % (first.name, second.name, SUBNET_VARIABLE, first.override, second.override, SUBNET_VARIABLE)
    )


def _override_moves_node_problem(host: HostRecord) -> str:
    return (
        "Host %s: %s is %s, but its existing node network uses %s, and an existing node keeps "
        "its subnet. Fix: set %s on host %s to %s, or remove it."
        % (host.name, SUBNET_VARIABLE, host.override, host.recorded,
           SUBNET_VARIABLE, host.name, host.recorded)
    )


def _override_over_recorded_problem(other: HostRecord, host: HostRecord) -> str:
    """other's override overlaps the subnet host's existing node network uses."""
    return (
        "Host %s: %s %s overlaps %s, which the existing node network of host %s uses, and an "
        "existing node keeps its subnet. Fix: choose another %s for host %s."
        % (other.name, SUBNET_VARIABLE, other.override, host.recorded, host.name,
           SUBNET_VARIABLE, other.name)
    )


def _blocked_problem(host: HostRecord, labels: t.Sequence[str]) -> str:
    """host's override, or else its kept recorded subnet, overlaps the blockers labels names."""
    if host.override is not None:
        return "%s %s overlaps %s. Fix: set %s on host %s to a subnet outside it." % (
            _override_subject(host.name), host.override, " and ".join(labels), SUBNET_VARIABLE, host.name
        )
    return (
        "%s %s overlaps %s, and an existing node keeps its subnet. Fix: change the conflicting "
        "range (u7s_pod_cidr, u7s_service_cidr or the host's address) so that it leaves %s free."
        % (_recorded_subject(host.name), host.recorded, " and ".join(labels), host.recorded)
    )


def plan_node_networks(
    records: t.Any,
    pool: t.Any,
    prefix: t.Any,
    reserved: t.Any = None,
    host_addresses: t.Any = None,
) -> dict[str, NodeNetwork]:
    """Each host's node network, keyed by host name in input order.

    Overrides are taken as given, recorded subnets kept, and every other host
    gets the lowest free /prefix subnet of pool, in input order. The same input
    gives the same plan; a host added at the end changes nothing for the others,
    and a host added elsewhere changes nothing for hosts with a recorded subnet.
    Raises NodeNetworkError, whose message names the hosts and what to change.

    The cost grows with n log n in the number of hosts, reserved ranges and host
    addresses: overlaps are looked up in an _OverlapIndex instead of comparing
    every pair, and allocation walks the pool once (see _free_subnets).
    """
    # (1) Validate everything first.
    hosts, pool_network, prefix_length, blockers = _parse_plan_input(records, pool, prefix, reserved, host_addresses)
    problems: list[str] = []
    plan: dict[str, NodeNetwork] = {}
    recorded_lengths = {host.recorded.prefixlen for host in hosts if host.recorded is not None}

    # (2) Overrides, pairwise disjoint.
    overrides = [host for host in hosts if host.override is not None]
    override_lengths = {host.override.prefixlen for host in overrides}
    override_index = _index([host.override for host in overrides], override_lengths | recorded_lengths)
    for number, host in enumerate(overrides):
        for other in override_index.overlapping(host.override):
            if other >= number:
                break
            problems.append(_overrides_overlap_problem(overrides[other], host))
        plan[host.name] = NodeNetwork(host.override, SOURCE_OVERRIDE)

    # (3) Recorded subnets are kept unless they overlap an override or one kept before.
    kept_index = _OverlapIndex(recorded_lengths)
    for number, host in enumerate(hosts):
        if host.recorded is None:
            continue
        if host.override is not None:
            if host.override != host.recorded:
                problems.append(_override_moves_node_problem(host))
            continue
        clash = override_index.overlapping(host.recorded)
        for other in clash:
            problems.append(_override_over_recorded_problem(overrides[other], host))
        if clash:
            continue
        if kept_index.overlapping(host.recorded):
            # Two hosts recorded overlapping subnets (a state file copied along with a
            # cloned host): the first keeps it, this one is allocated a new one below.
            continue
        kept_index.add(host.recorded, number)
        plan[host.name] = NodeNetwork(host.recorded, SOURCE_RECORDED)

    # (5, for given subnets) Nothing taken as given may overlap reserved ranges or host addresses.
    given = [host for host in hosts if host.name in plan]
    blocker_index = _index(
        [blocker.network for blocker in blockers], [plan[host.name].subnet.prefixlen for host in given]
    )
    for host in given:
        hits = blocker_index.overlapping(plan[host.name].subnet)
        if hits:
            problems.append(_blocked_problem(host, [blockers[number].label for number in hits]))
    if problems:
        raise NodeNetworkError(" ".join(problems))

    # (4) Everything else: the lowest free subnet of the pool, in input order. Every
    # subnet below the one a host gets was blocked already, so the next host's lowest
    # free subnet lies above it: the hosts take the subnets that nothing taken so far
    # blocks one after another, in a single walk through the pool.
    pending = [host for host in hosts if host.name not in plan]
    taken = [network.subnet for network in plan.values()] + [blocker.network for blocker in blockers]
    free = _free_subnets(pool_network, prefix_length, taken)
    for index, host in enumerate(pending):
        start = next(free, None)
        if start is None:
            raise NodeNetworkError(_exhausted(pool_network, prefix_length, plan, pending[index:]))
        plan[host.name] = NodeNetwork(ipaddress.IPv4Network((start, prefix_length)), SOURCE_ALLOCATED)

    return {host.name: plan[host.name] for host in hosts}


def _exhausted(
    pool: ipaddress.IPv4Network, prefix: int, plan: dict[str, NodeNetwork], waiting: list[HostRecord]
) -> str:
    inside = sum(1 for network in plan.values() if network.subnet.overlaps(pool))
    return (
        "The node subnet pool %s has no free /%d left for host %s: it holds %d subnets of /%d, "
        "%d node networks already lie in it and reserved ranges or host addresses block the rest; "
        "%d host(s) still need one (%s). Fix: use a larger pool or a longer prefix, "
        "or set %s on these hosts."
        % (pool, prefix, waiting[0].name, 1 << (prefix - pool.prefixlen), prefix, inside,
           len(waiting), ", ".join(host.name for host in waiting), SUBNET_VARIABLE)
    )
