#!/usr/bin/env python3
# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Times the controller-side planning of large inventories and prints how it grows.

Builds synthetic inventories of 100, 1,000 and 10,000 hosts (pool 10.64.0.0/10,
/24 per node, the pod and service CIDRs reserved, host addresses 172.16.x.y, a
few node_subnet overrides and recorded subnets, and some hosts that share an
address with another user's cluster, so published ports collide) and times each
function in MEASURED on each, best of 3. Near linear growth is a ratio of about
10 to 14 per tenfold hosts; quadratic is 100.

Exits 1 when planning 10,000 hosts takes 1 s or more (the target of issue 8).
Usage: bench/plan.py   (from anywhere; with the project's venv python)
To time one more function, add a (label, builder) pair to MEASURED: the builder
gets an Inventory and returns the call to time, without arguments.
"""

from __future__ import annotations

import gc
import os
import sys
import time
import typing as t

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tests/conftest.py makes ansible_collections.u7s.cluster importable from this checkout.
sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
import conftest  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

import yaml  # noqa: E402

from ansible_collections.u7s.cluster.plugins.module_utils.cluster_model import (  # noqa: E402
    CONTROLLER_SETTINGS,
    ClusterInput,
    plan_cluster,
)
from ansible_collections.u7s.cluster.plugins.module_utils.node_subnets import plan_node_networks  # noqa: E402
from ansible_collections.u7s.cluster.plugins.module_utils.ports import port_conflicts  # noqa: E402

SIZES = (100, 1000, 10000)
REPEAT = 3
POOL = "10.64.0.0/10"
PREFIX = 24
RESERVED = ["10.244.0.0/16", "10.96.0.0/12"]  # pod and service CIDRs
PORTS = {"etcd": 2379, "apiserver": 6443, "kubelet": 10250, "vxlan": 8472}
PROTOCOLS = {"vxlan": "udp"}
# Every OVERRIDE_EVERY-th host sets node_subnet, every RECORDED_EVERY-th has a node network
# already, every SHARED_EVERY-th runs as a second user on the previous host's address.
OVERRIDE_EVERY = 500
RECORDED_EVERY = 100
SHARED_EVERY = 50
# label -> (hosts, seconds): the run fails when the label takes that long or longer for that many hosts.
TARGETS = {"plan_node_networks": (10000, 1.0), "plan_cluster": (10000, 1.0)}
SETTINGS_ROLE = os.path.join(REPO_ROOT, "roles", "settings")
NEAR_LINEAR = 15.0  # growth per tenfold hosts still called near linear


class Inventory(t.NamedTuple):
    """The inputs of one synthetic inventory, in the shapes the filters pass on."""

    hosts: int
    records: list[dict[str, t.Any]]  # plan_node_networks' host records
    host_addresses: list[str]
    port_records: list[dict[str, t.Any]]  # port_conflicts' records
    shared: int  # hosts on another host's address: each publishes vxlan 8472/udp a second time


def inventory(size: int) -> Inventory:
    """size hosts; the overrides and recorded subnets lie in the pool, outside what allocation reaches first."""
    records = []
    addresses = []
    port_records = []
    shared = 0
    for index in range(size):
        name = "node%05d" % index
        record: dict[str, t.Any] = {"name": name, "override": None, "recorded": None}
        if index % OVERRIDE_EVERY == 7:
            record["override"] = "10.90.%d.0/24" % (index // OVERRIDE_EVERY)
        elif index % RECORDED_EVERY == 3:
            record["recorded"] = "10.80.%d.0/24" % (index // RECORDED_EVERY)
        records.append(record)
        user, ports = "u7s", dict(PORTS)
        if index % SHARED_EVERY == SHARED_EVERY - 1:
            # A second user's cluster on the previous host: other TCP ports, but the same VXLAN port.
            address = addresses[-1]
            user = "u7s2"
            ports.update(etcd=12379, apiserver=16443, kubelet=20250)
            shared += 1
        else:
            address = "172.16.%d.%d" % (index // 250, index % 250 + 1)
        addresses.append(address)
        port_records.append({"name": name, "address": address, "user": user, "ports": ports,
                             "unprivileged_port_start": 1024})
    return Inventory(size, records, addresses, port_records, shared)


def _plan(inv: Inventory) -> t.Callable[[], t.Any]:
    def call() -> t.Any:
        plan = plan_node_networks(inv.records, POOL, PREFIX, RESERVED, inv.host_addresses)
        assert len(plan) == inv.hosts
        return plan
    return call


def _ports(inv: Inventory) -> t.Callable[[], t.Any]:
    def call() -> t.Any:
        problems = port_conflicts(inv.port_records, PROTOCOLS)
        assert len(problems) == inv.shared, problems[:3]
        return problems
    return call


def _settings() -> tuple[dict[str, t.Any], dict[str, t.Any]]:
    """The settings' spec and their defaults, from the u7s.cluster.settings role."""
    with open(os.path.join(SETTINGS_ROLE, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
        spec = yaml.safe_load(handle)["argument_specs"]["settings"]["options"]
    with open(os.path.join(SETTINGS_ROLE, "defaults", "main.yml"), encoding="utf-8") as handle:
        defaults = yaml.safe_load(handle)
    return spec, {name: value for name, value in defaults.items() if name not in CONTROLLER_SETTINGS}


def _cluster(inv: Inventory) -> t.Callable[[], t.Any]:
    """The whole inventory check the settings role runs: every setting of every host, names, networks, ports."""
    spec, defaults = _settings()
    defaults.update(u7s_node_subnet_pool=POOL, u7s_pod_cidr="10.128.0.0/10", u7s_service_cidr="10.96.0.0/12")
    names = [record["name"] for record in inv.records]
    hosts = []
    for record, address in zip(inv.records, inv.host_addresses):
        settings = dict(defaults, u7s_host_ip=address, u7s_node_subnet=record["override"] or "")
        hosts.append({"name": record["name"], "settings": settings, "renamed": [], "ansible_host": address,
                      "default_ipv4": address, "all_ipv4": [address], "recorded_subnet": record["recorded"]})
    model = ClusterInput("u7s_cluster", {"u7s_cluster": names, "control_plane": names[:1]}, spec)

    def call() -> t.Any:
        plan = plan_cluster(model, hosts)
        # The shared addresses publish the same ports twice: those are the only problems.
        assert len(plan["problems"]) == 4 * inv.shared, plan["problems"][:3]
        return plan
    return call


# (label, builder): builder(inventory) returns the call to time.
MEASURED: list[tuple[str, t.Callable[[Inventory], t.Callable[[], t.Any]]]] = [
    ("plan_node_networks", _plan),
    ("port_conflicts", _ports),
    ("plan_cluster", _cluster),
]


def best_of(call: t.Callable[[], t.Any], repeat: int = REPEAT) -> float:
    """The shortest of repeat runs, in seconds; the garbage collector pauses while one runs, as in timeit."""
    best = float("inf")
    for _attempt in range(repeat):
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - started)
        finally:
            gc.enable()
    return best


def verdict(ratios: t.Sequence[float]) -> str:
    worst = max(ratios)
    if worst <= NEAR_LINEAR:
        return "near linear"
    if worst < 30:
        return "above linear (a busy machine, or more than n log n)"
    return "far above linear (quadratic is x100 per tenfold)"


def main() -> int:
    inventories = [inventory(size) for size in SIZES]
    times = {label: [best_of(build(inv)) for inv in inventories] for label, build in MEASURED}

    width = max(len(label) for label, _build in MEASURED) + 2
    print("best of %d, pool %s, /%d per node, %s" % (REPEAT, POOL, PREFIX, sys.version.split()[0]))
    print("%-18s" % "hosts" + "".join("%*s" % (width, label) for label, _build in MEASURED))
    for row, inv in enumerate(inventories):
        print("%-18s" % "{:,}".format(inv.hosts)
              + "".join("%*s" % (width, "%.4f s" % times[label][row]) for label, _build in MEASURED))
    ratios = {label: [later / earlier for earlier, later in zip(seconds, seconds[1:])] for label, seconds in times.items()}
    for step, (smaller, larger) in enumerate(zip(SIZES, SIZES[1:])):
        print("%-18s" % ("growth %d/%d" % (larger, smaller))
              + "".join("%*s" % (width, "x%.1f" % ratios[label][step]) for label, _build in MEASURED))
    for label, _build in MEASURED:
        print("verdict %s: %s (%s per tenfold hosts)"
              % (label, verdict(ratios[label]), ", ".join("x%.1f" % ratio for ratio in ratios[label])))

    failed = False
    for label, (hosts, limit) in TARGETS.items():
        seconds = times[label][SIZES.index(hosts)]
        met = seconds < limit
        failed = failed or not met
        print("target %s for %s hosts under %.1f s: %s (%.3f s)"
              % (label, "{:,}".format(hosts), limit, "met" if met else "MISSED", seconds))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
