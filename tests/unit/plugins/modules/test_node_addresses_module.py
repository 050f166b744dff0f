# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""u7s.cluster.node_addresses: address planning, patches, diff, and main() against a fake API."""

from __future__ import annotations

import copy
import datetime
import typing as t

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ansible_collections.u7s.cluster.plugins.modules import node_addresses
from ansible_collections.u7s.cluster.plugins.modules.node_addresses import (
    FLANNEL_PUBLIC_IP,
    UNINITIALIZED_TAINT,
    NodeRequest,
    NodeState,
    desired_addresses,
    node_state,
    object_patch,
    plan_diff,
    plan_node,
    status_patch,
    validate_requests,
)

UNINIT = {"key": UNINITIALIZED_TAINT, "value": "true", "effect": "NoSchedule"}
KEEP = {"key": "example.com/dedicated", "value": "gpu", "effect": "NoExecute", "timeAdded": "2026-01-31T12:00:00Z"}


def state(name: str = "n1", addresses: t.Sequence[tuple[str, str]] = (("InternalIP", "10.0.0.1"), ("Hostname", "n1")),
          annotations: dict[str, str] | None = None, taints: t.Sequence[dict[str, t.Any]] = (UNINIT, KEEP),
          resource_version: str = "7") -> NodeState:
    return NodeState(name, resource_version, tuple(addresses), dict(annotations or {}), tuple(taints))


class TestValidate:
    def test_normalizes_ips(self) -> None:
        assert validate_requests([{"name": "n1", "external_ip": " 192.0.2.1 "},
                                  {"name": "n2", "external_ip": "2001:DB8:0::1"}]) == [
            NodeRequest("n1", "192.0.2.1"), NodeRequest("n2", "2001:db8::1")]

    def test_reports_every_problem_at_once(self) -> None:
        with pytest.raises(ValueError) as err:
            validate_requests([
                {"name": "n1", "external_ip": "192.0.2.300"},
                {"name": "n2", "external_ip": "192.0.2.2"},
                {"name": "n2", "external_ip": "192.0.2.3"},
                {"name": "", "external_ip": "192.0.2.4"},
                {"name": "n3", "external_ip": "host.example.org"},
                {"name": "n4", "external_ip": "192.0.2.0/24"},
            ])
        assert str(err.value) == (
            "node n1: external_ip '192.0.2.300' is not an IP address; node n2 is listed more than once; "
            "nodes[3] has an empty name; node n3: external_ip 'host.example.org' is not an IP address; "
            "node n4: external_ip '192.0.2.0/24' is not an IP address."
        )


class TestDesiredAddresses:
    def test_adds_external_ip_between_internal_and_hostname(self) -> None:
        assert desired_addresses([("Hostname", "n1"), ("InternalIP", "10.0.0.1")], "192.0.2.1") == (
            ("InternalIP", "10.0.0.1"), ("ExternalIP", "192.0.2.1"), ("Hostname", "n1"))

    def test_replaces_other_external_ips_and_keeps_the_rest_in_order(self) -> None:
        current = [("ExternalDNS", "n1.example.org"), ("ExternalIP", "198.51.100.1"), ("InternalIP", "10.0.0.1"),
                   ("InternalDNS", "n1.internal"), ("InternalIP", "fd00::1"), ("ExternalIP", "192.0.2.1"),
                   ("Hostname", "n1"), ("InternalIP", "10.0.0.1")]
        assert desired_addresses(current, "192.0.2.1") == (
            ("InternalIP", "10.0.0.1"), ("InternalIP", "fd00::1"), ("ExternalIP", "192.0.2.1"), ("Hostname", "n1"),
            ("ExternalDNS", "n1.example.org"), ("InternalDNS", "n1.internal"))

    def test_no_addresses_yet(self) -> None:
        assert desired_addresses([], "192.0.2.1") == (("ExternalIP", "192.0.2.1"),)

    def test_already_right_is_unchanged(self) -> None:
        right = (("InternalIP", "10.0.0.1"), ("ExternalIP", "192.0.2.1"), ("Hostname", "n1"))
        assert desired_addresses(right, "192.0.2.1") == right


class TestPlan:
    def test_everything_to_do(self) -> None:
        plan = plan_node(state(), "192.0.2.1", FLANNEL_PUBLIC_IP, {UNINITIALIZED_TAINT})
        assert plan.addresses_changed and plan.annotation_changed and plan.taints_changed and plan.changed
        assert plan.taints == (KEEP,)
        assert plan.taints_removed == [UNINIT]
        assert status_patch(plan) == {
            "metadata": {"resourceVersion": "7"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                                     {"type": "ExternalIP", "address": "192.0.2.1"},
                                     {"type": "Hostname", "address": "n1"}]},
        }
        assert object_patch(plan) == {
            "metadata": {"resourceVersion": "7", "annotations": {FLANNEL_PUBLIC_IP: "192.0.2.1"}},
            "spec": {"taints": [KEEP]},  # timeAdded kept
        }

    def test_nothing_to_do(self) -> None:
        done = state(addresses=[("InternalIP", "10.0.0.1"), ("ExternalIP", "192.0.2.1"), ("Hostname", "n1")],
                     annotations={FLANNEL_PUBLIC_IP: "192.0.2.1", "other": "x"}, taints=[KEEP])
        plan = plan_node(done, "192.0.2.1", FLANNEL_PUBLIC_IP, {UNINITIALIZED_TAINT})
        assert not plan.changed and plan.taints_removed == []

    def test_last_taint_removed_sends_null(self) -> None:
        plan = plan_node(state(taints=[UNINIT, dict(UNINIT, effect="NoExecute")]), "192.0.2.1", None,
                         {UNINITIALIZED_TAINT})
        assert object_patch(plan) == {"metadata": {"resourceVersion": "7"}, "spec": {"taints": None}}
        assert len(plan.taints_removed) == 2

    def test_annotation_only(self) -> None:
        plan = plan_node(state(taints=[KEEP]), "192.0.2.1", "example.com/ip", {UNINITIALIZED_TAINT})
        assert object_patch(plan) == {"metadata": {"resourceVersion": "7", "annotations": {"example.com/ip": "192.0.2.1"}}}

    def test_no_annotation_and_no_taint_keys(self) -> None:
        plan = plan_node(state(annotations={FLANNEL_PUBLIC_IP: "198.51.100.1"}), "192.0.2.1", "", set())
        assert not plan.object_changed and plan.addresses_changed
        assert plan.annotation_key is None and plan.annotation_value is None

    def test_diff_lists_changed_nodes_only(self) -> None:
        changing = plan_node(state(), "192.0.2.1", FLANNEL_PUBLIC_IP, {UNINITIALIZED_TAINT})
        done = plan_node(state(
            name="n2", addresses=[("ExternalIP", "192.0.2.2")], annotations={FLANNEL_PUBLIC_IP: "192.0.2.2"},
            taints=[]), "192.0.2.2", FLANNEL_PUBLIC_IP, {UNINITIALIZED_TAINT})
        assert not done.changed
        assert plan_diff([changing, done]) == {
            "before": {"n1": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}],
                "annotation": {FLANNEL_PUBLIC_IP: None},
                "taints": [UNINIT, {"key": "example.com/dedicated", "value": "gpu", "effect": "NoExecute"}],
            }},
            "after": {"n1": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                              {"type": "ExternalIP", "address": "192.0.2.1"},
                              {"type": "Hostname", "address": "n1"}],
                "annotation": {FLANNEL_PUBLIC_IP: "192.0.2.1"},
                "taints": [{"key": "example.com/dedicated", "value": "gpu", "effect": "NoExecute"}],
            }},
        }


def test_node_state_from_a_v1_node() -> None:
    node = client.V1Node(
        metadata=client.V1ObjectMeta(name="n1", resource_version="42", annotations={"a": "b"}),
        spec=client.V1NodeSpec(taints=[
            client.V1Taint(key=UNINITIALIZED_TAINT, value="true", effect="NoSchedule"),
            client.V1Taint(key="k", effect="NoExecute",
                           time_added=datetime.datetime(2026, 1, 31, 12, 0, tzinfo=datetime.timezone.utc)),
        ]),
        status=client.V1NodeStatus(addresses=[client.V1NodeAddress(type="InternalIP", address="10.0.0.1")]),
    )
    assert node_state(node) == NodeState(
        "n1", "42", (("InternalIP", "10.0.0.1"),), {"a": "b"},
        (UNINIT, {"key": "k", "effect": "NoExecute", "timeAdded": "2026-01-31T12:00:00Z"}),
    )
    plus_one = datetime.timezone(datetime.timedelta(hours=1))
    shifted = client.V1Node(metadata=client.V1ObjectMeta(name="n1"), spec=client.V1NodeSpec(taints=[
        client.V1Taint(key="k", effect="NoSchedule", time_added=datetime.datetime(2026, 1, 31, 13, 0, tzinfo=plus_one))]))
    assert node_state(shifted).taints == ({"key": "k", "effect": "NoSchedule", "timeAdded": "2026-01-31T12:00:00Z"},)
    bare = node_state(client.V1Node(metadata=client.V1ObjectMeta(name="n2", resource_version="1")))
    assert bare == NodeState("n2", "1", (), {}, ())


# ---------------------------------------------------------------- main() against a fake API


def merge(target: dict[str, t.Any], patch: dict[str, t.Any]) -> dict[str, t.Any]:
    """RFC 7386 JSON merge patch."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


class FakeCore:
    """Nodes as API JSON, with merge patches, resourceVersion checks and a call log."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, t.Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.version = 100
        self.conflict_next: int = 0
        self.appear_after_reads: dict[str, tuple[int, dict[str, t.Any]]] = {}

    def add(self, name: str, addresses: list[tuple[str, str]], taints: list[dict[str, t.Any]],
            annotations: dict[str, str] | None = None) -> None:
        self.version += 1
        self.nodes[name] = {
            "metadata": {"name": name, "resourceVersion": str(self.version), "annotations": annotations or {}},
            "spec": {"taints": taints},
            "status": {"addresses": [{"type": kind, "address": address} for kind, address in addresses]},
        }

    def _get(self, name: str) -> dict[str, t.Any]:
        if name in self.appear_after_reads:
            reads, node = self.appear_after_reads[name]
            if reads <= 1:
                self.nodes[name] = node
                del self.appear_after_reads[name]
            else:
                self.appear_after_reads[name] = (reads - 1, node)
        if name not in self.nodes:
            raise ApiException(status=404, reason="Not Found")
        return self.nodes[name]

    def read_node(self, name: str, **_kw: t.Any) -> client.V1Node:
        self.calls.append(("read", name))
        return client.V1Node.from_dict(self._get(name))

    def _patch(self, kind: str, name: str, body: dict[str, t.Any], allowed: set[str], kw: dict[str, t.Any]) -> client.V1Node:
        assert kw["_content_type"] == "application/merge-patch+json"
        assert kw["field_manager"] == "u7s.cluster"
        self.calls.append((kind, name))
        node = self._get(name)
        if self.conflict_next:
            self.conflict_next -= 1
            self.version += 1
            node["metadata"]["resourceVersion"] = str(self.version)  # someone else wrote
        if body["metadata"].get("resourceVersion") != node["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        assert set(body) <= allowed, body
        patched = merge(node, body)
        self.version += 1
        patched["metadata"]["resourceVersion"] = str(self.version)
        self.nodes[name] = patched
        return client.V1Node.from_dict(patched)

    def patch_node_status(self, name: str, body: dict[str, t.Any], **kw: t.Any) -> client.V1Node:
        return self._patch("patch_status", name, body, {"metadata", "status"}, kw)

    def patch_node(self, name: str, body: dict[str, t.Any], **kw: t.Any) -> client.V1Node:
        return self._patch("patch", name, body, {"metadata", "spec"}, kw)

    def addresses(self, name: str) -> list[tuple[str, str]]:
        return [(a["type"], a["address"]) for a in self.nodes[name]["status"]["addresses"]]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCore:
    core = FakeCore()
    core.add("n1", [("InternalIP", "10.0.0.1"), ("Hostname", "n1")], [UNINIT, KEEP])
    core.add("n2", [("InternalIP", "10.0.0.2"), ("ExternalIP", "198.51.100.2"), ("Hostname", "n2")], [UNINIT])
    monkeypatch.setattr(node_addresses, "core_api", lambda module: core)
    return core


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(node_addresses, "monotonic", lambda: now[0])

    def sleep(seconds: float) -> None:
        assert 0 < seconds <= node_addresses.POLL_INTERVAL
        now[0] += seconds

    monkeypatch.setattr(node_addresses, "sleep", sleep)
    return now


@pytest.fixture
def run(run_module: t.Callable[..., dict[str, t.Any]]) -> t.Callable[..., dict[str, t.Any]]:
    return lambda **args: run_module(node_addresses.main, args)


NODES = [{"name": "n1", "external_ip": "192.0.2.1"}, {"name": "n2", "external_ip": "192.0.2.2"}]


def test_main_applies_then_is_idempotent(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    result = run(nodes=NODES)
    assert result["changed"] is True
    assert fake.addresses("n1") == [("InternalIP", "10.0.0.1"), ("ExternalIP", "192.0.2.1"), ("Hostname", "n1")]
    assert fake.addresses("n2") == [("InternalIP", "10.0.0.2"), ("ExternalIP", "192.0.2.2"), ("Hostname", "n2")]
    assert fake.nodes["n1"]["spec"]["taints"] == [KEEP]
    assert "taints" not in fake.nodes["n2"]["spec"]
    assert fake.nodes["n2"]["metadata"]["annotations"] == {FLANNEL_PUBLIC_IP: "192.0.2.2"}
    # Every node was read before the first patch.
    first_patch = next(i for i, call in enumerate(fake.calls) if call[0] != "read")
    assert fake.calls[:first_patch] == [("read", "n1"), ("read", "n2")]
    assert result["nodes"][1] == {
        "name": "n2", "changed": True, "annotation": "192.0.2.2", "taints_removed": [UNINIT],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "ExternalIP", "address": "192.0.2.2"},
                      {"type": "Hostname", "address": "n2"}],
    }

    fake.calls.clear()
    again = run(nodes=NODES, _ansible_diff=True)
    assert again["changed"] is False
    assert [call[0] for call in fake.calls] == ["read", "read"]
    assert again["diff"] == {"before": {}, "after": {}}


def test_main_check_mode_patches_nothing(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    before = copy.deepcopy(fake.nodes)
    result = run(nodes=NODES, _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] is True
    assert [n["changed"] for n in result["nodes"]] == [True, True]
    assert {call[0] for call in fake.calls} == {"read"}
    assert fake.nodes == before
    assert set(result["diff"]["after"]) == {"n1", "n2"}
    assert result["diff"]["before"]["n2"]["addresses"][1] == {"type": "ExternalIP", "address": "198.51.100.2"}
    assert result["diff"]["after"]["n2"]["addresses"][1] == {"type": "ExternalIP", "address": "192.0.2.2"}


def test_main_missing_node_changes_nothing(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    before = copy.deepcopy(fake.nodes)
    result = run(nodes=NODES + [{"name": "n3", "external_ip": "192.0.2.3"}, {"name": "n4", "external_ip": "192.0.2.4"}])
    assert result["failed"] is True
    assert result["msg"] == "Node n3, n4 does not exist; no node was changed."
    assert fake.nodes == before


def test_main_invalid_input_reads_nothing(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    result = run(nodes=NODES + [{"name": "n3", "external_ip": "not-an-ip"}])
    assert result["failed"] is True
    assert result["msg"] == "Invalid nodes: node n3: external_ip 'not-an-ip' is not an IP address."
    assert fake.calls == []


def test_main_requires_name_and_external_ip(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    result = run(nodes=[{"name": "n1"}])
    assert result["failed"] is True
    assert "external_ip" in result["msg"]
    assert fake.calls == []


def test_main_waits_for_late_nodes(fake: FakeCore, clock: list[float], run: t.Callable[..., dict[str, t.Any]]) -> None:
    fake.appear_after_reads["n3"] = (3, {
        "metadata": {"name": "n3", "resourceVersion": "5"}, "spec": {},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.3"}]},
    })
    result = run(nodes=[{"name": "n3", "external_ip": "192.0.2.3"}], wait_timeout=60)
    assert result["changed"] is True, result
    assert clock[0] == 1000.0 + 2 * node_addresses.POLL_INTERVAL
    assert fake.addresses("n3") == [("InternalIP", "10.0.0.3"), ("ExternalIP", "192.0.2.3")]


def test_main_gives_up_after_wait_timeout(fake: FakeCore, clock: list[float],
                                          run: t.Callable[..., dict[str, t.Any]]) -> None:
    result = run(nodes=NODES + [{"name": "n9", "external_ip": "192.0.2.9"}], wait_timeout=5)
    assert result["failed"] is True
    assert result["msg"] == "Node n9 does not exist after waiting 5s; no node was changed."
    assert clock[0] == 1005.0
    # Nodes found once are not read again while waiting for the others.
    assert fake.calls.count(("read", "n1")) == 1
    assert {call[0] for call in fake.calls} == {"read"}


def test_main_retries_conflicts(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    fake.conflict_next = 2
    result = run(nodes=NODES[:1])
    assert result["changed"] is True
    assert fake.calls == [("read", "n1"), ("patch_status", "n1"), ("read", "n1"), ("patch_status", "n1"),
                          ("read", "n1"), ("patch_status", "n1"), ("patch", "n1")]
    assert fake.nodes["n1"]["spec"]["taints"] == [KEEP]
    assert result["nodes"][0]["taints_removed"] == [UNINIT]


def test_main_gives_up_on_endless_conflicts(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    fake.conflict_next = 100
    result = run(nodes=NODES)
    assert result["failed"] is True
    assert result["msg"] == "Node n1 kept changing while it was patched (HTTP 409 Conflict 5 times)."


def test_main_reports_nodes_already_changed(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    original = fake.patch_node

    def forbidden_for_n2(name: str, body: dict[str, t.Any], **kw: t.Any) -> client.V1Node:
        if name == "n2":
            raise ApiException(status=403, reason="Forbidden")
        return original(name, body, **kw)

    monkeypatch.setattr(fake, "patch_node", forbidden_for_n2)
    result = run(nodes=NODES)
    assert result["failed"] is True
    assert result["msg"] == "Cannot patch Node n2: HTTP 403 Forbidden (changed before the error: n1)"


def test_main_rejects_negative_wait(fake: FakeCore, run: t.Callable[..., dict[str, t.Any]]) -> None:
    result = run(nodes=NODES, wait_timeout=-1)
    assert result["failed"] is True
    assert result["msg"] == "wait_timeout must not be negative, got -1."
