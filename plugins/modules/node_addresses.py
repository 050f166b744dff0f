#!/usr/bin/python
# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: node_addresses
short_description: Give Kubernetes Nodes the external IP of their host, as a cloud controller would
version_added: 0.1.0
description:
  - For each node in O(nodes), makes the Node object agree with the host it runs on, doing the part of
    a cloud controller manager's work that a rootless cluster needs.
  - In C(status.addresses), sets exactly one C(ExternalIP) entry, O(nodes[].external_ip). The C(InternalIP)
    and C(Hostname) entries the kubelet wrote are kept, other C(ExternalIP) entries are dropped, and the
    list is ordered C(InternalIP), C(ExternalIP), C(Hostname), then any others in their original order.
    It is written through the status subresource with a JSON merge patch, so the stored list is exactly this one.
  - Sets the annotation O(annotation) to the external IP (by default the one that makes flannel use the
    host's address as the node's public IP).
  - Removes the taints whose keys are in O(taints_to_remove), whatever their effect; by default the one the
    kubelet adds while it waits for a cloud provider to initialize the node. Other taints are kept.
  - Checks all input, then reads all nodes, before it changes any node, so a bad IP or a node that does not
    exist changes nothing.
  - Patches carry the C(resourceVersion) they were computed from; when the Node changed in between
    (HTTP 409), it is read again and the patch recomputed, a few times.
options:
  nodes:
    description:
      - The nodes and their hosts' IP addresses.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the Node object.
        type: str
        required: true
      external_ip:
        description:
          - The host's IP address (IPv4 or IPv6) that other hosts reach it at.
        type: str
        required: true
  taints_to_remove:
    description:
      - Keys of the taints to remove.
    type: list
    elements: str
    default: [node.cloudprovider.kubernetes.io/uninitialized]
  annotation:
    description:
      - Key of the annotation to set to the external IP.
      - Set to an empty string to leave annotations alone.
    type: str
    default: flannel.alpha.coreos.com/public-ip-overwrite
  wait_timeout:
    description:
      - Seconds to wait for nodes that are not registered yet.
      - With C(0), a node that does not exist fails the module at once.
    type: int
    default: 0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - u7s.cluster.kube
attributes:
  check_mode:
    support: full
    details: Reads the nodes and reports what would change without patching them.
  diff_mode:
    support: full
    details:
      - One C(before)/C(after) pair of dicts keyed by node name, for the nodes that change, each with
        C(addresses), C(annotation) and C(taints).
  platform:
    platforms: posix
notes:
  - When the kubelet runs with C(--cloud-provider=external), it leaves C(status.addresses) to a cloud
    controller; this module is that controller's stand-in. A kubelet without that flag recomputes its
    addresses and may drop the C(ExternalIP) entry again.
  - The kubeconfig needs to get and patch Nodes and their status.
seealso:
  - name: Node addresses
    description: The address types of a Node.
    link: https://kubernetes.io/docs/reference/node/node-status/#addresses
author:
  - u7s.cluster developers (@u7s)
"""

EXAMPLES = r"""
- name: List each host's node name and address
  ansible.builtin.set_fact:
    u7s_node_list: >-
      {{ u7s_node_list | default([])
         + [{'name': hostvars[item].inventory_hostname_short, 'external_ip': hostvars[item].ansible_host}] }}
  loop: "{{ groups['u7s_cluster'] }}"
  run_once: true

- name: Give every node its host's address, once the kubelets have registered
  u7s.cluster.node_addresses:
    kubeconfig: /etc/kubernetes/admin.conf
    nodes: "{{ u7s_node_list }}"
    wait_timeout: 300
  delegate_to: "{{ groups['control_plane'][0] }}"
  run_once: true

- name: Set the address of one node, keep the uninitialized taint, no annotation
  u7s.cluster.node_addresses:
    nodes:
      - name: worker-1
        external_ip: 192.0.2.21
    taints_to_remove: []
    annotation: ""
  register: u7s_nodes

- name: Show the addresses
  ansible.builtin.debug:
    msg: "{{ u7s_nodes.nodes[0].addresses }}"
"""

RETURN = r"""
nodes:
  description:
    - Each node of O(nodes), in the same order, after the run (in check mode, as it would be).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Name of the Node.
      type: str
      sample: worker-1
    changed:
      description: Whether the node was (in check mode, would be) changed.
      type: bool
      sample: true
    addresses:
      description: Its C(status.addresses).
      type: list
      elements: dict
      sample:
        - {type: InternalIP, address: 10.100.0.5}
        - {type: ExternalIP, address: 192.0.2.21}
        - {type: Hostname, address: worker-1}
    taints_removed:
      description: The taints that were (would be) removed; each has C(key), C(effect) and, when set, C(value).
      type: list
      elements: dict
      sample:
        - {key: node.cloudprovider.kubernetes.io/uninitialized, value: "true", effect: NoSchedule}
    annotation:
      description: The value of the O(annotation) annotation; V(null) when O(annotation) is empty.
      type: str
      sample: 192.0.2.21
"""

import datetime
import ipaddress
import time
import typing as t
from dataclasses import dataclass

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.u7s.cluster.plugins.module_utils.kube import (
    REQUEST_TIMEOUT,
    ApiException,
    KubeError,
    api_errors,
    core_api,
    format_rfc3339,
    kube_argument_spec,
)

UNINITIALIZED_TAINT = "node.cloudprovider.kubernetes.io/uninitialized"
FLANNEL_PUBLIC_IP = "flannel.alpha.coreos.com/public-ip-overwrite"
MERGE_PATCH = "application/merge-patch+json"
FIELD_MANAGER = "u7s.cluster"
CONFLICT_ATTEMPTS = 5
POLL_INTERVAL = 2.0
ADDRESS_ORDER = ("InternalIP", "ExternalIP", "Hostname")


@dataclass(frozen=True)
class NodeRequest:
    """One validated entry of the nodes option."""

    name: str
    external_ip: str


@dataclass(frozen=True)
class NodeState:
    """The parts of a Node this module looks at, as plain data."""

    name: str
    resource_version: str
    addresses: tuple[tuple[str, str], ...]  # (type, address)
    annotations: dict[str, str]
    taints: tuple[dict[str, t.Any], ...]  # API field names: key, value, effect, timeAdded


@dataclass(frozen=True)
class NodePlan:
    """What a node looks like now and after the module's changes."""

    state: NodeState
    addresses: tuple[tuple[str, str], ...]
    annotation_key: str | None
    annotation_value: str | None
    taints: tuple[dict[str, t.Any], ...]

    @property
    def addresses_changed(self) -> bool:
        return self.addresses != self.state.addresses

    @property
    def annotation_changed(self) -> bool:
        return self.annotation_key is not None and self.state.annotations.get(self.annotation_key) != self.annotation_value

    @property
    def taints_changed(self) -> bool:
        return self.taints != self.state.taints

    @property
    def object_changed(self) -> bool:
        return self.annotation_changed or self.taints_changed

    @property
    def changed(self) -> bool:
        return self.addresses_changed or self.object_changed

    @property
    def taints_removed(self) -> list[dict[str, t.Any]]:
        kept = list(self.taints)
        removed = []
        for taint in self.state.taints:
            if taint in kept:
                kept.remove(taint)
            else:
                removed.append(taint)
        return removed


# ---------------------------------------------------------------- pure logic


def validate_requests(nodes: t.Iterable[t.Mapping[str, t.Any]]) -> list[NodeRequest]:
    """Checked, normalized node entries; ValueError naming every bad entry."""
    requests: list[NodeRequest] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(nodes):
        name = (entry.get("name") or "").strip()
        raw_ip = str(entry.get("external_ip") or "").strip()
        if not name:
            problems.append("nodes[%d] has an empty name" % index)
            continue
        if name in seen:
            problems.append("node %s is listed more than once" % name)
            continue
        seen.add(name)
        try:
            external_ip = str(ipaddress.ip_address(raw_ip))
        except ValueError:
            problems.append("node %s: external_ip %r is not an IP address" % (name, entry.get("external_ip")))
            continue
        requests.append(NodeRequest(name, external_ip))
    if problems:
        raise ValueError("; ".join(problems) + ".")
    return requests


def desired_addresses(current: t.Sequence[tuple[str, str]], external_ip: str) -> tuple[tuple[str, str], ...]:
    """InternalIP entries, the one ExternalIP, Hostname entries, then the rest in their order; no duplicates."""
    kept: list[tuple[str, str]] = []
    for address in current:
        if address[0] != "ExternalIP" and address not in kept:
            kept.append(address)
    kept.append(("ExternalIP", external_ip))

    def rank(address: tuple[str, str]) -> int:
        return ADDRESS_ORDER.index(address[0]) if address[0] in ADDRESS_ORDER else len(ADDRESS_ORDER)

    return tuple(sorted(kept, key=rank))  # sorted() is stable: original order within a rank


def plan_node(
    state: NodeState, external_ip: str, annotation_key: str | None, taint_keys: t.Collection[str]
) -> NodePlan:
    """The node's addresses, annotation and taints after the module's changes."""
    taints = tuple(taint for taint in state.taints if taint.get("key") not in taint_keys)
    return NodePlan(
        state=state,
        addresses=desired_addresses(state.addresses, external_ip),
        annotation_key=annotation_key or None,
        annotation_value=external_ip if annotation_key else None,
        taints=taints,
    )


def address_dicts(addresses: t.Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"type": kind, "address": address} for kind, address in addresses]


def taint_summary(taint: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """key, value (when set) and effect: a taint as users write it, without timeAdded."""
    summary = {"key": taint.get("key")}
    if taint.get("value"):
        summary["value"] = taint["value"]
    summary["effect"] = taint.get("effect")
    return summary


def status_patch(plan: NodePlan) -> dict[str, t.Any]:
    """JSON merge patch of the status: replaces the whole address list, guarded by resourceVersion."""
    return {
        "metadata": {"resourceVersion": plan.state.resource_version},
        "status": {"addresses": address_dicts(plan.addresses)},
    }


def object_patch(plan: NodePlan) -> dict[str, t.Any]:
    """JSON merge patch of metadata and spec: the annotation and the remaining taints."""
    patch: dict[str, t.Any] = {"metadata": {"resourceVersion": plan.state.resource_version}}
    if plan.annotation_changed:
        patch["metadata"]["annotations"] = {plan.annotation_key: plan.annotation_value}
    if plan.taints_changed:
        # null removes the field; a merge patch replaces lists as a whole.
        patch["spec"] = {"taints": [dict(taint) for taint in plan.taints] or None}
    return patch


def diff_view(state: NodeState, addresses: t.Iterable[tuple[str, str]], annotation_key: str | None,
              annotation_value: str | None, taints: t.Iterable[t.Mapping[str, t.Any]]) -> dict[str, t.Any]:
    view: dict[str, t.Any] = {"addresses": address_dicts(addresses)}
    if annotation_key:
        view["annotation"] = {annotation_key: annotation_value}
    view["taints"] = [taint_summary(taint) for taint in taints]
    return view


def plan_diff(plans: t.Iterable[NodePlan]) -> dict[str, dict[str, t.Any]]:
    """Ansible's before/after diff, keyed by node name, of the nodes that change."""
    before: dict[str, t.Any] = {}
    after: dict[str, t.Any] = {}
    for plan in plans:
        if not plan.changed:
            continue
        state = plan.state
        key = plan.annotation_key
        before[state.name] = diff_view(
            state, state.addresses, key, state.annotations.get(key) if key else None, state.taints
        )
        after[state.name] = diff_view(state, plan.addresses, key, plan.annotation_value, plan.taints)
    return {"before": before, "after": after}


def node_result(plan: NodePlan, changed: bool) -> dict[str, t.Any]:
    return {
        "name": plan.state.name,
        "changed": changed,
        "addresses": address_dicts(plan.addresses),
        "taints_removed": [taint_summary(taint) for taint in plan.taints_removed],
        "annotation": plan.annotation_value if plan.annotation_key else None,
    }


# ---------------------------------------------------------------- API


def monotonic() -> float:
    return time.monotonic()


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def node_state(node: t.Any) -> NodeState:
    """The plain-data view of a V1Node."""
    metadata = node.metadata
    status = node.status
    spec = node.spec
    taints = []
    for taint in (spec.taints if spec is not None else None) or []:
        entry: dict[str, t.Any] = {"key": taint.key}
        if taint.value:
            entry["value"] = taint.value
        entry["effect"] = taint.effect
        if taint.time_added is not None:
            # The client parses timeAdded into an aware datetime; the API writes it back as text.
            added = taint.time_added
            entry["timeAdded"] = format_rfc3339(added) if isinstance(added, datetime.datetime) else added
        taints.append(entry)
    addresses = tuple(
        (address.type, address.address) for address in ((status.addresses if status is not None else None) or [])
    )
    return NodeState(
        name=metadata.name,
        resource_version=metadata.resource_version or "",
        addresses=addresses,
        annotations=dict(metadata.annotations or {}),
        taints=tuple(taints),
    )


def read_node(core: t.Any, name: str) -> NodeState | None:
    """The node, or None when it does not exist."""
    try:
        with api_errors("Cannot read Node %s" % name, keep=(404,)):
            return node_state(core.read_node(name, _request_timeout=REQUEST_TIMEOUT))
    except ApiException:
        return None


def read_nodes(core: t.Any, names: t.Sequence[str], wait_timeout: int) -> tuple[dict[str, NodeState], list[str]]:
    """The nodes that exist and the names still missing after waiting up to wait_timeout seconds."""
    deadline = monotonic() + wait_timeout
    found: dict[str, NodeState] = {}
    while True:
        for name in names:
            if name not in found:
                state = read_node(core, name)
                if state is not None:
                    found[name] = state
        missing = [name for name in names if name not in found]
        remaining = deadline - monotonic()
        if not missing or remaining <= 0:
            return found, missing
        sleep(min(POLL_INTERVAL, remaining))


def apply_plan(core: t.Any, request: NodeRequest, plan: NodePlan, annotation_key: str | None,
               taint_keys: t.Collection[str]) -> NodePlan:
    """Patch status, then metadata and spec; on a conflict read the node again and recompute.

    Returns the plan the last successful patches were made from.
    """
    name = request.name
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            if plan.addresses_changed:
                with api_errors("Cannot patch the status of Node %s" % name, keep=(409,)):
                    patched = core.patch_node_status(
                        name, status_patch(plan), field_manager=FIELD_MANAGER,
                        _content_type=MERGE_PATCH, _request_timeout=REQUEST_TIMEOUT,
                    )
                # The object patch must carry the resourceVersion the status patch produced.
                plan = plan_node(node_state(patched), request.external_ip, annotation_key, taint_keys)
            if plan.object_changed:
                with api_errors("Cannot patch Node %s" % name, keep=(409,)):
                    core.patch_node(
                        name, object_patch(plan), field_manager=FIELD_MANAGER,
                        _content_type=MERGE_PATCH, _request_timeout=REQUEST_TIMEOUT,
                    )
            return plan
        except ApiException:
            if attempt == CONFLICT_ATTEMPTS - 1:
                raise KubeError(
                    "Node %s kept changing while it was patched (HTTP 409 Conflict %d times)." % (name, CONFLICT_ATTEMPTS)
                ) from None
            state = read_node(core, name)
            if state is None:
                raise KubeError("Node %s was deleted while it was patched." % name) from None
            plan = plan_node(state, request.external_ip, annotation_key, taint_keys)
    raise AssertionError("unreachable")


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec=kube_argument_spec(
            nodes=dict(
                type="list", elements="dict", required=True,
                options=dict(name=dict(type="str", required=True), external_ip=dict(type="str", required=True)),
            ),
            taints_to_remove=dict(type="list", elements="str", default=[UNINITIALIZED_TAINT]),
            annotation=dict(type="str", default=FLANNEL_PUBLIC_IP),
            wait_timeout=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    annotation_key: str | None = module.params["annotation"] or None
    taint_keys = frozenset(module.params["taints_to_remove"] or ())
    wait_timeout: int = module.params["wait_timeout"]
    if wait_timeout < 0:
        module.fail_json(msg="wait_timeout must not be negative, got %d." % wait_timeout)
    try:
        requests = validate_requests(module.params["nodes"])
    except ValueError as exc:
        module.fail_json(msg="Invalid nodes: %s" % exc)

    core = core_api(module)
    results = []
    plans = []
    try:
        states, missing = read_nodes(core, [request.name for request in requests], wait_timeout)
        if missing:
            waited = " after waiting %ds" % wait_timeout if wait_timeout else ""
            raise KubeError("Node %s does not exist%s; no node was changed." % (", ".join(missing), waited))
        plans = [plan_node(states[request.name], request.external_ip, annotation_key, taint_keys) for request in requests]
        for request, plan in zip(requests, plans):
            changed = plan.changed
            if changed and not module.check_mode:
                final = apply_plan(core, request, plan, annotation_key, taint_keys)
                # What was removed is judged against the node as first read.
                plan = NodePlan(plan.state, final.addresses, final.annotation_key, final.annotation_value, final.taints)
            results.append(node_result(plan, changed))
    except KubeError as exc:
        done = [result["name"] for result in results if result["changed"]]
        suffix = " (changed before the error: %s)" % ", ".join(done) if done and not module.check_mode else ""
        module.fail_json(msg=str(exc) + suffix, nodes=results)

    result: dict[str, t.Any] = dict(changed=any(r["changed"] for r in results), nodes=results)
    if module._diff:
        result["diff"] = plan_diff(plans)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
