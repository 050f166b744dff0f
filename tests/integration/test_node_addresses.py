# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""u7s.cluster.node_addresses against a real kube-apiserver (the kube_api fixture)."""

from __future__ import annotations

import secrets
import threading
import typing as t
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from apiserver.server import KubeAPI
from modules_helper import Run, kube_module_runner

from ansible_collections.u7s.cluster.plugins.modules import node_addresses

UNINITIALIZED = "node.cloudprovider.kubernetes.io/uninitialized"
KEEP = "example.com/dedicated"
FLANNEL = "flannel.alpha.coreos.com/public-ip-overwrite"


class Nodes:
    """Creates Nodes the way a kubelet with --cloud-provider=external registers; deletes them at the end."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core
        self.names: list[str] = []
        self.prefix = "u7s-it-%s-" % secrets.token_hex(3)

    def create(self, suffix: str, internal_ip: str, extra_addresses: list[dict[str, str]] | None = None) -> str:
        name = self.prefix + suffix
        self.names.append(name)
        self.core.create_node(client.V1Node(
            metadata=client.V1ObjectMeta(name=name, labels={"u7s.test/node-addresses": "true"}),
            spec=client.V1NodeSpec(taints=[
                client.V1Taint(key=UNINITIALIZED, value="true", effect="NoSchedule"),
                client.V1Taint(key=KEEP, value="gpu", effect="NoExecute"),
            ]),
        ))
        addresses = [{"type": "InternalIP", "address": internal_ip}, {"type": "Hostname", "address": name}]
        addresses += extra_addresses or []
        self.core.patch_node_status(name, {"status": {"addresses": addresses}},
                                    _content_type="application/merge-patch+json")
        return name

    def delete_all(self) -> None:
        for name in self.names:
            try:
                self.core.delete_node(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
def core(kube_api: KubeAPI) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api.api_client)


@pytest.fixture
def nodes(core: client.CoreV1Api) -> Iterator[Nodes]:
    made = Nodes(core)
    yield made
    made.delete_all()


@pytest.fixture
def run(kube_api: KubeAPI, capsys: pytest.CaptureFixture[str]) -> Run:
    return kube_module_runner(node_addresses.main, kube_api, capsys)


def addresses(core: client.CoreV1Api, name: str) -> list[tuple[str, str]]:
    return [(a.type, a.address) for a in core.read_node_status(name).status.addresses]


def taints(core: client.CoreV1Api, name: str) -> list[tuple[str, str | None, str]]:
    return [(taint.key, taint.value, taint.effect) for taint in core.read_node(name).spec.taints or []]


def without_uninitialized(before: list[tuple[str, str | None, str]]) -> list[tuple[str, str | None, str]]:
    """The taints expected after a run: the API server adds node.kubernetes.io/not-ready
    (TaintNodesByCondition) to new Nodes besides the two the test sets; only one must go."""
    assert (UNINITIALIZED, "true", "NoSchedule") in before and (KEEP, "gpu", "NoExecute") in before
    return [taint for taint in before if taint[0] != UNINITIALIZED]


def taint_dicts(entries: list[tuple[str, str | None, str]]) -> list[dict[str, str]]:
    return [{"key": key, **({"value": value} if value else {}), "effect": effect} for key, value, effect in entries]


def test_sets_address_annotation_and_removes_the_taint_then_is_idempotent(core, nodes: Nodes, run: Run) -> None:
    one = nodes.create("a", "10.100.0.5")
    two = nodes.create("b", "10.100.0.6")
    expected_taints = {name: without_uninitialized(taints(core, name)) for name in (one, two)}
    result = run(nodes=[{"name": one, "external_ip": "192.0.2.5"}, {"name": two, "external_ip": "2001:DB8::6"}])
    assert result["changed"] is True, result

    assert addresses(core, one) == [("InternalIP", "10.100.0.5"), ("ExternalIP", "192.0.2.5"), ("Hostname", one)]
    assert addresses(core, two) == [("InternalIP", "10.100.0.6"), ("ExternalIP", "2001:db8::6"), ("Hostname", two)]
    for name, ip in ((one, "192.0.2.5"), (two, "2001:db8::6")):
        node = core.read_node(name)
        assert node.metadata.annotations[FLANNEL] == ip
        assert node.metadata.labels == {"u7s.test/node-addresses": "true"}
        assert taints(core, name) == expected_taints[name]

    assert result["nodes"] == [
        {"name": one, "changed": True, "annotation": "192.0.2.5",
         "addresses": [{"type": "InternalIP", "address": "10.100.0.5"},
                       {"type": "ExternalIP", "address": "192.0.2.5"},
                       {"type": "Hostname", "address": one}],
         "taints_removed": [{"key": UNINITIALIZED, "value": "true", "effect": "NoSchedule"}]},
        {"name": two, "changed": True, "annotation": "2001:db8::6",
         "addresses": [{"type": "InternalIP", "address": "10.100.0.6"},
                       {"type": "ExternalIP", "address": "2001:db8::6"},
                       {"type": "Hostname", "address": two}],
         "taints_removed": [{"key": UNINITIALIZED, "value": "true", "effect": "NoSchedule"}]},
    ]

    version = core.read_node(one).metadata.resource_version
    again = run(nodes=[{"name": one, "external_ip": "192.0.2.5"}, {"name": two, "external_ip": "2001:db8::6"}])
    assert again["changed"] is False
    assert [n["changed"] for n in again["nodes"]] == [False, False]
    assert [n["taints_removed"] for n in again["nodes"]] == [[], []]
    assert again["nodes"][0]["addresses"] == result["nodes"][0]["addresses"]
    assert core.read_node(one).metadata.resource_version == version


def test_a_wrong_external_ip_is_replaced_and_other_addresses_kept(core, nodes: Nodes, run: Run) -> None:
    name = nodes.create("c", "10.100.0.7", extra_addresses=[
        {"type": "ExternalIP", "address": "198.51.100.9"},
        {"type": "InternalDNS", "address": "c.internal"},
        {"type": "ExternalIP", "address": "198.51.100.10"},
    ])
    before = taints(core, name)
    result = run(nodes=[{"name": name, "external_ip": "192.0.2.7"}], taints_to_remove=[], annotation="")
    assert result["changed"] is True
    assert addresses(core, name) == [
        ("InternalIP", "10.100.0.7"), ("ExternalIP", "192.0.2.7"), ("Hostname", name), ("InternalDNS", "c.internal"),
    ]
    # Neither the taints nor the annotations were touched.
    assert (UNINITIALIZED, "true", "NoSchedule") in before
    assert taints(core, name) == before
    assert FLANNEL not in (core.read_node(name).metadata.annotations or {})
    assert result["nodes"][0]["taints_removed"] == []
    assert result["nodes"][0]["annotation"] is None


def test_check_mode_reports_and_changes_nothing_with_a_diff(core, nodes: Nodes, run: Run) -> None:
    name = nodes.create("d", "10.100.0.8")
    unchanged = nodes.create("e", "10.100.0.9")
    run(nodes=[{"name": unchanged, "external_ip": "192.0.2.9"}])
    before = taints(core, name)
    versions = {n: core.read_node(n).metadata.resource_version for n in (name, unchanged)}

    result = run(nodes=[{"name": name, "external_ip": "192.0.2.8"}, {"name": unchanged, "external_ip": "192.0.2.9"}],
                 _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] is True
    assert [n["changed"] for n in result["nodes"]] == [True, False]
    assert result["nodes"][0]["taints_removed"] == [{"key": UNINITIALIZED, "value": "true", "effect": "NoSchedule"}]
    assert {n: core.read_node(n).metadata.resource_version for n in (name, unchanged)} == versions
    assert addresses(core, name) == [("InternalIP", "10.100.0.8"), ("Hostname", name)]

    assert result["diff"] == {
        "before": {name: {
            "addresses": [{"type": "InternalIP", "address": "10.100.0.8"}, {"type": "Hostname", "address": name}],
            "annotation": {FLANNEL: None},
            "taints": taint_dicts(before),
        }},
        "after": {name: {
            "addresses": [{"type": "InternalIP", "address": "10.100.0.8"},
                          {"type": "ExternalIP", "address": "192.0.2.8"},
                          {"type": "Hostname", "address": name}],
            "annotation": {FLANNEL: "192.0.2.8"},
            "taints": taint_dicts(without_uninitialized(before)),
        }},
    }

    # The real run does what check mode announced.
    real = run(nodes=[{"name": name, "external_ip": "192.0.2.8"}], _ansible_diff=True)
    assert real["diff"]["after"][name] == result["diff"]["after"][name]
    assert real["nodes"][0] == result["nodes"][0]


def test_a_missing_node_fails_and_no_node_is_changed(core, nodes: Nodes, run: Run) -> None:
    name = nodes.create("f", "10.100.0.10")
    version = core.read_node(name).metadata.resource_version
    missing = nodes.prefix + "missing"
    result = run(nodes=[{"name": name, "external_ip": "192.0.2.10"}, {"name": missing, "external_ip": "192.0.2.11"}])
    assert result["failed"] is True
    assert result["msg"] == "Node %s does not exist; no node was changed." % missing
    assert core.read_node(name).metadata.resource_version == version


def test_an_invalid_ip_fails_before_anything_changes(core, nodes: Nodes, run: Run) -> None:
    name = nodes.create("g", "10.100.0.12")
    version = core.read_node(name).metadata.resource_version
    result = run(nodes=[{"name": name, "external_ip": "192.0.2.12"}, {"name": name + "x", "external_ip": "192.0.2.300"}])
    assert result["failed"] is True
    assert "external_ip '192.0.2.300' is not an IP address" in result["msg"]
    assert core.read_node(name).metadata.resource_version == version


def test_waits_for_a_node_that_registers_later(core, nodes: Nodes, run: Run) -> None:
    suffix = "late"
    timer = threading.Timer(1.5, nodes.create, args=(suffix, "10.100.0.13"))
    timer.start()
    try:
        result = run(nodes=[{"name": nodes.prefix + suffix, "external_ip": "192.0.2.13"}], wait_timeout=30)
    finally:
        timer.join()
    assert result["changed"] is True, result
    assert ("ExternalIP", "192.0.2.13") in addresses(core, nodes.prefix + suffix)


def test_gives_up_waiting_with_a_message(nodes: Nodes, run: Run) -> None:
    result = run(nodes=[{"name": nodes.prefix + "never", "external_ip": "192.0.2.14"}], wait_timeout=1)
    assert result["failed"] is True
    assert result["msg"] == "Node %snever does not exist after waiting 1s; no node was changed." % nodes.prefix


def test_a_concurrent_change_is_not_lost(core, nodes: Nodes, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """A taint added between the module's read and its patch survives: the 409 makes it read again."""
    name = nodes.create("h", "10.100.0.15")
    # Addresses and annotation first, so the next run only patches the taints (the object, not the status).
    assert run(nodes=[{"name": name, "external_ip": "192.0.2.15"}], taints_to_remove=[])["changed"] is True
    expected = without_uninitialized(taints(core, name)) + [("example.com/late", None, "NoSchedule")]
    original_read_nodes = node_addresses.read_nodes
    original_read_node = node_addresses.read_node
    reads: list[str] = []

    def read_then_someone_taints(core_api: t.Any, names: t.Sequence[str], wait_timeout: int) -> t.Any:
        found = original_read_nodes(core_api, names, wait_timeout)
        node = core.read_node(name)
        node.spec.taints.append(client.V1Taint(key="example.com/late", effect="NoSchedule"))
        core.replace_node(name, node)
        return found

    def counting_read_node(core_api: t.Any, node_name: str) -> t.Any:
        reads.append(node_name)
        return original_read_node(core_api, node_name)

    monkeypatch.setattr(node_addresses, "read_nodes", read_then_someone_taints)
    monkeypatch.setattr(node_addresses, "read_node", counting_read_node)
    result = run(nodes=[{"name": name, "external_ip": "192.0.2.15"}])
    assert result["changed"] is True, result
    assert reads == [name, name]  # the first read, and one more after the conflict
    assert taints(core, name) == expected
    assert result["nodes"][0]["taints_removed"] == [{"key": UNINITIALIZED, "value": "true", "effect": "NoSchedule"}]
