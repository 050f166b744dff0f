# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Several control planes (stacked etcd): counts, the endpoint's hosts block, etcd's quorum.

Pure logic on plain data, no I/O; the cluster model, the node role (the hosts
file of the node container) and remove-node.yml (the quorum check) use it.
"""

from __future__ import annotations

import ipaddress
import typing as t
from collections.abc import Mapping, Sequence

from ansible_collections.u7s.cluster.plugins.module_utils.values import HOST_NAME

# etcd needs a majority of its members; an even count survives no more failures than
# the odd one below it, and more than five slows every write for no gain kubeadm supports.
CONTROL_PLANE_COUNTS = (1, 3, 5)
# kubeadm v1.36 builds the members' URLs from these fixed ports (GetClientURL,
# GetPeerURL in cmd/kubeadm/app/util/etcd: the etcd pods' advertise-client-urls
# annotation the joining kubeadm reaches the cluster by, and the `member add` peer URL):
# with several control planes the settings must hold them.
KUBEADM_ETCD_PORTS = {"u7s_port_etcd": 2379, "u7s_port_etcd_peer": 2380}
# The marker lines around the block the collection keeps in a hosts file.
HOSTS_BEGIN = "# BEGIN u7s.cluster control-plane endpoint"
HOSTS_END = "# END u7s.cluster control-plane endpoint"


def quorum(members: int) -> int:
    """How many of ``members`` etcd members must be healthy for the cluster to write."""
    return members // 2 + 1


def hosts_lines(name: str, addresses: Sequence[str]) -> list[str]:
    """The hosts-file lines that resolve ``name`` to every address, one line each, in the given order.

    One line per address, not one line with all: glibc and Go's resolver both return every line's
    address for a name, and Go's dialer tries them in turn.
    """
    if not name:
        raise ValueError("The endpoint name must not be empty.")
    lines = []
    for address in addresses:
        parsed = ipaddress.ip_address(str(address))
        line = "%s %s" % (parsed, name)
        if line not in lines:
            lines.append(line)
    return lines


def hosts_block(name: str, addresses: Sequence[str]) -> str:
    """The marked block, as the node's hosts file under its configuration directory holds it."""
    return "\n".join([HOSTS_BEGIN, *hosts_lines(name, addresses), HOSTS_END]) + "\n"


def merge_hosts(text: str, block: str) -> str:
    """``text`` (an /etc/hosts) with the marked block replaced by ``block`` (appended when missing).

    The same as the node image's u7s-hosts-merge does in the node at every start; an empty
    ``block`` removes the marked block.
    """
    kept = []
    inside = False
    for line in text.splitlines():
        if line.strip() == HOSTS_BEGIN:
            inside = True
            continue
        if inside:
            if line.strip() == HOSTS_END:
                inside = False
            continue
        kept.append(line)
    merged = "\n".join(kept) + ("\n" if kept else "")
    return merged + block


def removal_problem(host: str, control_planes: Sequence[str], health: Mapping[str, bool]) -> str | None:
    """Why control plane ``host`` may not leave the etcd cluster now (None: it may).

    ``control_planes``: the inventory's control-plane hosts; ``health``: every etcd member's name
    (its host, as :func:`etcd_members` names it) and whether ``etcdctl endpoint health --cluster``
    found it healthy. etcd must have its quorum now (``member remove`` is a write), and the members
    that stay must be healthy in a majority of the smaller membership: the cluster keeps writing
    while the host goes and afterwards. Removing one of 3 healthy members leaves 2 of 2: allowed;
    removing a healthy one of 3 while another is down leaves 1 of 2: refused; removing the member
    that is down leaves 2 of 2: allowed.
    """
    if host not in control_planes:
        return None
    if len(control_planes) <= 1:
        return ("%s is the cluster's only control plane: removing it removes the cluster. Fix: reset the whole "
                "cluster with playbooks/reset.yml instead." % host)
    if not health:
        return ("removing control plane %s needs etcd's member list, but no surviving control plane gave one. Nothing "
                "was changed. Fix: bring up etcd on the other control planes (playbooks/site.yml), then remove %s."
                % (host, host))
    sick_now = [name for name in health if not health[name]]
    if len(health) - len(sick_now) < quorum(len(health)):
        return ("etcd has lost its quorum: of its %d members only %d are healthy (%s unhealthy), and it needs %d, so "
                "it cannot remove a member. Nothing was changed. Fix: bring %s back first (playbooks/site.yml, or "
                "start the hosts); to recover from a lost majority, restore a snapshot (playbooks/etcd-restore.yml)."
                % (len(health), len(health) - len(sick_now), ", ".join(sick_now), quorum(len(health)),
                   ", ".join(sick_now)))
    remaining = [name for name in health if name != host]
    healthy = [name for name in remaining if health[name]]
    needed = quorum(len(remaining))
    if len(healthy) < needed:
        sick = [name for name in remaining if not health[name]]
        return ("removing control plane %s leaves %d etcd member(s), of which %d are healthy (%s unhealthy); etcd "
                "needs %d to keep writing. Nothing was changed. Fix: bring %s back first (playbooks/site.yml, or "
                "start the host), then remove %s." % (host, len(remaining), len(healthy), ", ".join(sick) or "none",
                                                      needed, ", ".join(sick) or "the missing members", host))
    return None


def _url_host(url: str) -> str:
    """The host part of an etcd URL (https://192.0.2.11:2379 -> 192.0.2.11)."""
    rest = str(url).split("://", 1)[-1]
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    return rest.rsplit(":", 1)[0] if ":" in rest else rest


def etcd_members(member_list: Mapping[str, t.Any], endpoint_health: Sequence[Mapping[str, t.Any]] | None,
                 node_hosts: Mapping[str, str]) -> list[dict[str, t.Any]]:
    """etcd's members with their inventory host and health, in the member list's order.

    ``member_list``: ``etcdctl member list -w json``; ``endpoint_health``: ``etcdctl endpoint health --cluster
    -w json`` (a list; None or missing entries: unhealthy); ``node_hosts``: node name -> inventory host (kubeadm
    names a member after its node). Each member: ``id`` (hex, as ``etcdctl member remove`` takes it), ``name``,
    ``host`` (the inventory host, else the member's name, else ``unstarted member <id>``), ``healthy``,
    ``peer_hosts`` (the peer URLs' hosts).
    """
    healthy_urls = {str(entry.get("endpoint")) for entry in endpoint_health or ()
                    if isinstance(entry, Mapping) and entry.get("health") is True}
    members = []
    for member in member_list.get("members") or ():
        member_id = "%x" % int(member["ID"])
        name = str(member.get("name") or "")
        client_urls = [str(url) for url in member.get("clientURLs") or ()]
        members.append({
            "id": member_id,
            "name": name,
            "host": node_hosts.get(name) or name or "unstarted member %s" % member_id,
            "healthy": any(url in healthy_urls for url in client_urls),
            "peer_hosts": [_url_host(url) for url in member.get("peerURLs") or ()],
        })
    return members


def members_of_host(members: Sequence[Mapping[str, t.Any]], node_name: str, address: str | None) -> list[str]:
    """The IDs of the members that are the node ``node_name`` (by name, or by a peer URL on ``address``)."""
    return [str(member["id"]) for member in members
            if (node_name and member.get("name") == node_name)
            or (address and address in (member.get("peer_hosts") or ()))]


def init_host(control_planes: Sequence[str], hosts: Mapping[str, Mapping[str, t.Any]]) -> str:
    """The control plane that runs ``kubeadm init`` (or holds the running cluster's first place).

    At a bring-up the first in inventory order. Afterwards the first that is not known to be without a
    node: a control plane removed with remove-node.yml (or replaced by a new host) that is first in
    the group must join the running cluster, not init a second one. ``hosts``: the host records by name
    (``recorded_settings`` a mapping when the host's node state file was read, ``in_play`` False when
    its state is unknown).
    """
    def without_node(name: str) -> bool:
        record = hosts.get(name) or {}
        return record.get("in_play", True) and not isinstance(record.get("recorded_settings"), Mapping)

    running = [name for name in control_planes if not without_node(name)]
    if not any(isinstance((hosts.get(name) or {}).get("recorded_settings"), Mapping) for name in control_planes):
        return control_planes[0]
    return running[0]


def count_problem(group: str, members: Sequence[str]) -> str | None:
    """Why the control-plane group cannot hold ``members`` (None: it can)."""
    if len(members) in CONTROL_PLANE_COUNTS:
        return None
    shown = ", ".join(members[:5]) + (" (and %d more)" % (len(members) - 5) if len(members) > 5 else "")
    return ("The group %s (u7s_control_plane_group) must hold 1, 3 or 5 hosts, but holds %d%s: etcd needs a "
            "majority of its members, so an even count survives no more failures than one host fewer, and more "
            "than five slows every write. Fix: %s%s." % (
                group, len(members), " (%s)" % shown if members else "",
                "add a host of the cluster group to %s" % group if not members else
                "move hosts between %s and workers until it holds %s" % (
                    group, " or ".join(str(count) for count in CONTROL_PLANE_COUNTS if count != len(members))),
                "" if len(members) not in (2, 4) else
                " (after playbooks/remove-node.yml took a control plane out, keep it listed until a new host takes "
                "its place in %s, or add that host now: site.yml joins it)" % group))


def endpoint_name_problem(value: t.Any) -> str | None:
    """Why u7s_control_plane_endpoint_name cannot name the endpoint (None: it can)."""
    text = str(value)
    if len(text) > 253 or not HOST_NAME.fullmatch(text) or text.rsplit(".", maxsplit=1)[-1].isdecimal():
        return ("u7s_control_plane_endpoint_name %r is not a DNS name (labels of letters, digits and '-', not an "
                "address). Fix: set it to a name such as u7s-apiserver." % (value,))
    return None
