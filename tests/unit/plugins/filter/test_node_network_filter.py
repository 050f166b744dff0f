# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The node network filters, directly and through Ansible's templating."""

from __future__ import annotations

import sys
import typing as t
from pathlib import Path

import pytest
from ansible.errors import AnsibleError, AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

from ansible_collections.u7s.cluster.plugins.filter import node_network as filter_plugin
from ansible_collections.u7s.cluster.plugins.filter.node_network import (
    FilterModule,
    node_network_plan,
    port_conflicts,
)

RECORDS = [
    {"name": "node1", "override": None, "recorded": "10.100.0.0/24"},
    {"name": "node2", "override": "10.100.7.0/24", "recorded": None},
    {"name": "node3", "override": "", "recorded": None},
]


def _collection_modules() -> dict[str, t.Any]:
    return {
        name: module for name, module in sys.modules.items()
        if name == "ansible_collections" or name.startswith("ansible_collections.")
    }


@pytest.fixture(scope="module")
def collection_loader() -> t.Iterator[None]:
    """Resolve u7s.cluster.* plugin names as ansible-playbook does, with Ansible's collection loader.

    The loader only serves ansible_collections packages it imported itself, so
    the ones imported through sys.path (tests/conftest.py) step aside while it
    is installed and come back afterwards, for the other tests.
    """
    # <root>/ansible_collections/u7s/cluster/plugins/filter/node_network.py
    root = str(Path(filter_plugin.__file__).parents[5])
    saved = _collection_modules()
    for name in saved:
        del sys.modules[name]
    _AnsibleCollectionFinder(paths=[root])._install()
    try:
        yield
    finally:
        _AnsibleCollectionFinder._remove()
        for name in _collection_modules():
            del sys.modules[name]
        sys.modules.update(saved)


def render(template: str, variables: dict[str, t.Any]) -> t.Any:
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(template))


def test_filters_are_registered() -> None:
    filters = FilterModule().filters()
    assert filters["node_network_plan"] is node_network_plan
    assert filters["port_conflicts"] is port_conflicts


def test_node_network_plan_returns_plain_dicts() -> None:
    assert node_network_plan(RECORDS, reserved=["10.244.0.0/16", "10.96.0.0/16"], host_addresses=["192.0.2.10"]) == {
        "node1": {"subnet": "10.100.0.0/24", "node_ip": "10.100.0.2", "gateway": "10.100.0.1", "source": "recorded"},
        "node2": {"subnet": "10.100.7.0/24", "node_ip": "10.100.7.2", "gateway": "10.100.7.1", "source": "override"},
        "node3": {"subnet": "10.100.1.0/24", "node_ip": "10.100.1.2", "gateway": "10.100.1.1", "source": "allocated"},
    }


def test_node_network_plan_errors_are_filter_errors() -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        node_network_plan(RECORDS + [{"name": "node4", "override": "10.100.7.128/25"}])
    assert str(caught.value) == (
        "node_network_plan: Hosts node2 and node4: their node_subnet values 10.100.7.0/24 and 10.100.7.128/25 "
        "overlap, but every node needs a subnet of its own. Fix: change node_subnet on one of them."
    )


def test_port_conflicts() -> None:
    records = [{"name": "n1", "user": "u7s", "address": "192.0.2.10", "ports": {"etcd": 2379, "vxlan": 2379}}]
    assert port_conflicts(records, {"vxlan": "udp"}) == []
    assert port_conflicts(records) == [
        "host n1 (user u7s): the etcd and vxlan ports are both 2379/tcp. Fix: give one of them another port."
    ]
    with pytest.raises(AnsibleFilterError, match="^port_conflicts: The protocol of port vxlan must be tcp or udp"):
        port_conflicts(records, {"vxlan": "UDP"})


def test_node_network_plan_in_a_template(collection_loader: None) -> None:
    plan = render(
        "{{ records | u7s.cluster.node_network_plan(pool='10.100.0.0/16', prefix=26,"
        " reserved=[service_cidr], host_addresses=addresses) }}",
        {"records": RECORDS, "service_cidr": "10.100.1.0/26", "addresses": ["10.100.1.70", "node3.example"]},
    )
    assert {name: value["subnet"] for name, value in plan.items()} == {
        "node1": "10.100.0.0/24", "node2": "10.100.7.0/24", "node3": "10.100.1.128/26",
    }


def test_node_network_plan_failure_in_a_template(collection_loader: None) -> None:
    with pytest.raises(AnsibleError, match="node_network_plan: Host node1 appears more than once"):
        render("{{ records | u7s.cluster.node_network_plan }}", {"records": RECORDS + RECORDS[:1]})


def test_port_conflicts_in_a_template(collection_loader: None) -> None:
    records = [
        {"name": "n1", "user": "alice", "address": "192.0.2.10", "ports": {"apiserver": 6443, "vxlan": 8472}},
        {"name": "n1b", "user": "bob", "address": "192.0.2.10", "ports": {"apiserver": 6443, "vxlan": 8473}},
    ]
    problems = render("{{ records | u7s.cluster.port_conflicts({'vxlan': 'udp'}) }}", {"records": records})
    assert problems == [
        "Port 6443/tcp on address 192.0.2.10 is published twice: by host n1 (user alice) as its apiserver port "
        "and by host n1b (user bob) as its apiserver port. Fix: give one of them another port."
    ]
