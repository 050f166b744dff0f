# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""What the kubeadm role may do to a node whose completion marker is missing.

The role's probe (roles/kubeadm/vars/main.yml, kubeadm_node_probe) reads the node
container once and reports, as YAML booleans, the keys of PROBE_KEYS. The
decisions below never reset a node that holds a cluster:

init (the control-plane host)
  the init marker is there                     -> done
  the API server answers /readyz               -> adopt (write the marker; no reset, no init)
  etcd data, admin.conf, the etcd manifest or
  the cluster CA key is there, the API is down -> refuse, naming what was found
  none of them                                 -> init (kubeadm reset --force of the leftovers, then init)

join (every other host)
  the join marker is there                     -> done
  kubelet.conf is there, the API knows the node -> adopt
  otherwise                                    -> join (reset the leftovers of a join the API does not know)
"""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

INIT_MARKER = "/etc/kubernetes/u7s-init.done"
JOIN_MARKER = "/etc/kubernetes/u7s-join.done"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
ADMIN_CONF = "/etc/kubernetes/admin.conf"

# What the probe reports, and the paths behind the keys that mean "this node holds a control plane".
CLUSTER_DATA = (
    ("etcd_member", "/var/lib/etcd/member", "etcd's data"),
    ("admin_conf", ADMIN_CONF, "the cluster's admin kubeconfig"),
    ("etcd_manifest", "/etc/kubernetes/manifests/etcd.yaml", "etcd's static pod manifest"),
    ("ca_key", "/etc/kubernetes/pki/ca.key", "the cluster CA's key, which the joined nodes trust"),
)
PROBE_KEYS = ("init_marker", "join_marker", "kubelet_conf", "api_ready") + tuple(key for key, _p, _w in CLUSTER_DATA)

ACTIONS = ("done", "init", "join", "adopt", "refuse")


def _flags(probe: Mapping, keys: t.Iterable[str]) -> dict[str, bool]:
    """The probe's booleans; a key missing or not a boolean is an error (the probe and this file disagree)."""
    flags = {}
    for key in keys:
        value = probe.get(key)
        if not isinstance(value, bool):
            raise ValueError("the node probe must report %s as true or false, got %r." % (key, value))
        flags[key] = value
    return flags


def _context(context: Mapping) -> dict[str, str]:
    missing = [key for key in ("host", "container", "cli", "user") if not context.get(key)]
    if missing:
        raise ValueError("the context must name %s." % ", ".join(missing))
    return {key: str(context[key]) for key in ("host", "container", "cli", "user")}


def _in_node(ctx: Mapping[str, str], command: str) -> str:
    return "`%s exec %s %s`" % (ctx["cli"], ctx["container"], command)


def init_decision(probe: Mapping, context: Mapping) -> dict[str, t.Any]:
    """What to do on the control-plane host: action, the cluster data found (paths), and a message.

    CONTEXT names the host (inventory name), the node container, the engine's CLI and the cluster user,
    for the message's commands.
    """
    ctx = _context(context)
    flags = _flags(probe, ("init_marker",))
    if flags["init_marker"]:
        return {"action": "done", "found": [], "message": ""}
    flags = _flags(probe, ["api_ready"] + [key for key, _p, _w in CLUSTER_DATA])
    found = [path for key, path, _what in CLUSTER_DATA if flags[key]]
    if flags["api_ready"]:
        return {"action": "adopt", "found": found, "message": (
            "%s: kubeadm init was not marked complete (%s is missing), but the node's API server answers "
            "/readyz with %s: adopted the running control plane (wrote the marker); nothing was reset or "
            "initialized." % (ctx["host"], INIT_MARKER, ADMIN_CONF))}
    if found:
        described = ", ".join("%s (%s)" % (path, what) for key, path, what in CLUSTER_DATA if flags[key])
        return {"action": "refuse", "found": found, "message": (
            "%s: kubeadm init was not marked complete in the node container %s (%s is missing), but the node "
            "holds a control plane: %s; and its API server does not answer /readyz with %s. Nothing was reset: "
            "`kubeadm reset --force` would delete this cluster's data and certificates. "
            "Fix: if this control plane should be running, look at its kubelet and etcd as the cluster user %s "
            "(%s, %s, %s), bring them up and re-run; if you mean to discard this control plane and everything "
            "the cluster holds, reset it by hand with %s (and reset the nodes that joined it) and re-run."
            % (ctx["host"], ctx["container"], INIT_MARKER, described, ADMIN_CONF, ctx["user"],
               _in_node(ctx, "systemctl status kubelet"), _in_node(ctx, "journalctl -u kubelet -n 100"),
               _in_node(ctx, "crictl ps -a"), _in_node(ctx, "kubeadm reset --force")))}
    return {"action": "init", "found": [], "message": ""}


def join_decision(probe: Mapping, registered: t.Any, context: Mapping) -> dict[str, t.Any]:
    """What to do on a joining host: action, what was found (paths), and a message.

    REGISTERED: whether the API knows a Node of this host's name; None when it was not asked (only a
    node with a kubelet.conf and no join marker needs the answer).
    """
    ctx = _context(context)
    flags = _flags(probe, ("join_marker",))
    if flags["join_marker"]:
        return {"action": "done", "found": [], "message": ""}
    flags = _flags(probe, ("kubelet_conf",))
    if not flags["kubelet_conf"]:
        return {"action": "join", "found": [], "message": ""}
    if not isinstance(registered, bool):
        raise ValueError("%s has %s without a join marker: whether the API knows the node must be true or false, "
                         "got %r." % (ctx["host"], KUBELET_CONF, registered))
    if registered:
        return {"action": "adopt", "found": [KUBELET_CONF], "message": (
            "%s: kubeadm join was not marked complete (%s is missing), but the node has %s and the API knows "
            "it: adopted the joined node (wrote the marker); nothing was reset or joined again."
            % (ctx["host"], JOIN_MARKER, KUBELET_CONF))}
    return {"action": "join", "found": [KUBELET_CONF], "message": ""}
