# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The cluster model: the whole inventory checked at once, and every host's node planned.

Pure logic on plain data, no I/O; the ``u7s.cluster.cluster_plan`` action
gathers the input from the inventory and calls :func:`plan_cluster` once per
run, on the controller.

The settings are declared, typed, documented and defaulted once, in the
``u7s.cluster.settings`` role (``defaults/main.yml``, ``meta/argument_specs.yml``);
this module knows only what each setting means: which may differ between hosts,
and what makes a value one the cluster cannot work with. Every problem is
reported at once, each naming the host(s), the inventory variable and a fix
that leaves working nodes alone.

Input, one record per host of the cluster group, in inventory order::

    {
        "name": "node1",                      # inventory hostname
        "settings": {"u7s_user": "u7s", ...}, # every setting, defaults applied, not yet checked
        "renamed": ["node_host_ip"],          # variables set on the host that were renamed
        "ansible_host": "192.0.2.10",         # or None
        "default_ipv4": "192.0.2.10",         # from gathered facts; None without facts
        "all_ipv4": ["192.0.2.10"],           # from gathered facts; None without facts
        "kernel": "6.12.48+deb13-amd64",      # the kernel release, from gathered facts; None without facts
        "recorded_settings": {...},           # the settings its node runs with (RECORDED_SETTINGS); None unknown
        "recorded_subnet": "10.100.0.0/24",   # the host's existing node network; "" for none
                                              # known; None when unknown (a host outside the play)
        "in_play": True,                      # the host is in this run (not left out by --limit)
    }

The cost is linear in the number of hosts (plus the subnet plan's n log n):
values shared by many hosts are checked once per distinct value.
"""

from __future__ import annotations

import ipaddress
import json
import re
import typing as t
from collections.abc import Mapping, Sequence

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.u7s.cluster.plugins.module_utils import bypass4netns
from ansible_collections.u7s.cluster.plugins.module_utils.node_subnets import (
    MAX_PREFIX,
    MIN_PREFIX,
    NodeNetworkError,
    parse_subnet,
    plan_node_networks,
)
from ansible_collections.u7s.cluster.plugins.module_utils.control_planes import (
    KUBEADM_ETCD_PORTS,
    count_problem,
    endpoint_name_problem,
    init_host,
)
from ansible_collections.u7s.cluster.plugins.module_utils.fleet_registry import registry_plan
from ansible_collections.u7s.cluster.plugins.module_utils.ports import port_conflicts
from ansible_collections.u7s.cluster.plugins.module_utils.registries import redacted, registry_problems
from ansible_collections.u7s.cluster.plugins.module_utils.values import HOST_NAME

# Settings that may differ from host to host; every other one must be the same
# on every host of the cluster (one kubelet configuration, one VXLAN port, ...).
HOST_SETTINGS = frozenset({
    "u7s_user",
    "u7s_engine",
    "u7s_allow_cgroup_v1",
    "u7s_host_ip",
    "u7s_node_subnet",
    "u7s_node_name",
    "u7s_extra_ports",
    "u7s_publish_address",
    "u7s_bypass4netns",
})
# Read on the controller only (templated per host by Ansible); never compared.
CONTROLLER_SETTINGS = frozenset({"u7s_kubeconfig"})
# Settings that may hold secrets: messages and the returned plan (which Ansible prints) show them redacted.
SECRET_SETTINGS = {"u7s_registries": redacted}

# Settings a running node keeps (they are in its published ports, its environment or the
# kubeadm state in its volumes): the node role records them, and changing one on a running
# cluster is refused until the upgrade playbook can carry the change.
RECORDED_SETTINGS = (
    "u7s_kubernetes_version",
    "u7s_pod_cidr",
    "u7s_service_cidr",
    "u7s_dns_domain",
    "u7s_port_etcd",
    "u7s_port_apiserver",
    "u7s_port_kubelet",
    "u7s_port_vxlan",
    "u7s_cgroup_driver",
    "u7s_kubelet_config",
)

# The node's ports, by setting, with their protocol. Which hosts publish each: NODE_PORT_HOSTS.
NODE_PORTS = (
    ("u7s_port_etcd", "tcp"),
    ("u7s_port_etcd_peer", "tcp"),
    ("u7s_port_apiserver", "tcp"),
    ("u7s_port_kubelet", "tcp"),
    ("u7s_port_vxlan", "udp"),
)
# Which hosts publish each node port, and whom the firewall lets reach it. Nothing outside
# the node needs etcd while there is one control plane (its API server is in the same node);
# with several ("several_control_planes") every control plane's etcd is reached by the other
# members (peer) and by a joining kubeadm (client); the API server is on the control planes
# only; every kubelet and VXLAN endpoint is reached by the other hosts. "cluster": the
# inventory's host addresses; "apiserver": those, the controller and
# u7s_firewall_apiserver_sources; "control_planes": the control-plane hosts' addresses.
NODE_PORT_HOSTS = {
    "u7s_port_etcd": "several_control_planes",
    "u7s_port_etcd_peer": "several_control_planes",
    "u7s_port_apiserver": "control_plane",
    "u7s_port_kubelet": "all",
    "u7s_port_vxlan": "all",
}
NODE_PORT_SOURCES = {
    "u7s_port_etcd": "control_planes",
    "u7s_port_etcd_peer": "control_planes",
    "u7s_port_apiserver": "apiserver",
    "u7s_port_kubelet": "cluster",
    "u7s_port_vxlan": "cluster",
}
ANY_IPV4 = "0.0.0.0"

# Variables of earlier releases (role options), and the setting that replaced each.
RENAMED = {
    "host_prereqs_user": "u7s_user",
    "rootless_runtime_user": "u7s_user",
    "node_image_user": "u7s_user",
    "node_user": "u7s_user",
    "rootless_runtime_engine": "u7s_engine",
    "node_image_engine": "u7s_engine",
    "node_engine": "u7s_engine",
    "host_prereqs_allow_cgroup_v1": "u7s_allow_cgroup_v1",
    "node_cluster_group": "u7s_cluster_group",
    "kubeadm_cluster_group": "u7s_cluster_group",
    "kubeadm_control_plane_group": "u7s_control_plane_group",
    "node_image_kubernetes_version": "u7s_kubernetes_version",
    "kubeadm_kubernetes_version": "u7s_kubernetes_version",
    "node_image_tag": "u7s_kubernetes_version",
    "kubeadm_pod_cidr": "u7s_pod_cidr",
    "flannel_pod_cidr": "u7s_pod_cidr",
    "kubeadm_service_cidr": "u7s_service_cidr",
    "kubeadm_dns_domain": "u7s_dns_domain",
    "node_subnet_pool": "u7s_node_subnet_pool",
    "node_subnet_prefix": "u7s_node_subnet_prefix",
    "node_port_etcd": "u7s_port_etcd",
    "kubeadm_port_etcd": "u7s_port_etcd",
    "node_port_apiserver": "u7s_port_apiserver",
    "kubeadm_port_apiserver": "u7s_port_apiserver",
    "node_port_kubelet": "u7s_port_kubelet",
    "kubeadm_port_kubelet": "u7s_port_kubelet",
    "node_port_vxlan": "u7s_port_vxlan",
    "flannel_vxlan_port": "u7s_port_vxlan",
    "kubeadm_control_plane_endpoint": "u7s_control_plane_endpoint",
    "kubeadm_cgroup_driver": "u7s_cgroup_driver",
    "node_cgroup_driver": "u7s_cgroup_driver",
    "kubeadm_kubelet_config": "u7s_kubelet_config",
    "kubeadm_controller_kubeconfig": "u7s_kubeconfig",
    "flannel_kubeconfig": "u7s_kubeconfig",
    "node_host_ip": "u7s_host_ip",
    "node_subnet": "u7s_node_subnet",
    "node_name": "u7s_node_name",
    "node_extra_ports": "u7s_extra_ports",
    "node_image": "u7s_kubernetes_version",
    "node_image_name": "u7s_kubernetes_version",
    "node_reserved_cidrs": "u7s_pod_cidr",
}

# Engines the settings accept but the roles cannot run yet, with the reason (none now:
# nerdctl has its task files in every role since the engine tools arrived).
ENGINES_NOT_YET: dict[str, str] = {}
# useradd's rule (shadow-utils), and what the collection's roles can quote safely.
# All used with fullmatch (a trailing newline from a YAML block is no match).
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
KUBERNETES_VERSION = re.compile(r"v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# The kubelet's default node CIDR mask (kube-controller-manager --node-cidr-mask-size).
NODE_POD_PREFIX = 24
# kube-apiserver refuses a larger IPv4 service range.
MAX_SERVICE_PREFIX = 12
# The service range must hold the API service (.1) and cluster DNS (.10).
MIN_SERVICE_SIZE_PREFIX = 28
# KubeletConfiguration fields the settings set; u7s_kubelet_config may not set them too.
KUBELET_FIELDS_OF_SETTINGS = {
    "port": "u7s_port_kubelet",
    "cgroupDriver": "u7s_cgroup_driver",
    "clusterDomain": "u7s_dns_domain",
}
# How many host names a message lists before it counts the rest.
NAMES_SHOWN = 5


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe_hosts(names: Sequence[str]) -> str:
    """'host a', 'hosts a, b' or 'hosts a, b, ... (and 9995 more)'."""
    shown = ", ".join(names[:NAMES_SHOWN])
    more = " (and %d more)" % (len(names) - NAMES_SHOWN) if len(names) > NAMES_SHOWN else ""
    return ("host " if len(names) == 1 else "hosts ") + shown + more


class ClusterInput(t.NamedTuple):
    """What the action gathered about the cluster as a whole."""

    cluster_group: str
    groups: Mapping[str, Sequence[str]]
    spec: Mapping[str, Mapping[str, t.Any]]
    # Controller paths the settings name (u7s_registries' certificates, the fleet registry's CA and
    # images) that are no files there.
    missing_files: frozenset[str] = frozenset()
    # The fleet registry group's hosts ({name, host_ip, ansible_host, default_ipv4}); None: no such group.
    registry_hosts: Sequence[Mapping[str, t.Any]] | None = None
    # Where the controller keeps the CA (and key) it generates for the fleet registry.
    generated_ca: tuple[str, str] = ("", "")


class _Problems:
    """Problems in the order found; the same text once."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._seen: set[str] = set()

    def add(self, text: str) -> None:
        if text not in self._seen:
            self._seen.add(text)
            self.items.append(text)


# Declared types a value of these Python types already has (bool is no int here).
_PYTHON_TYPES = {"str": (str,), "int": (int,), "bool": (bool,), "dict": (dict,), "path": (str,)}


def _key(value: t.Any) -> t.Hashable:
    """A hashable key equal for equal values (scalars directly: this runs for every host and setting).

    By kind, not by class: Ansible hands values over as subclasses of str, int... (data tags), and a
    value read back from a file is the plain class.
    """
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return (kind.__name__, kind(value))
    if value is None:
        return ("none", None)
    return json.dumps(value, sort_keys=True, default=str)


# Types the roles use as they come: a value of another type is refused, not converted.
_STRICT_TYPES = {
    "bool": (bool, "true or false (a YAML boolean; on the command line -e '{\"name\": false}')"),
    "dict": (dict, "a mapping"),
    "list": (list, "a list"),
}


def _has_declared_type(option: Mapping[str, t.Any], value: t.Any) -> bool:
    """Whether value needs no conversion or check beyond its declared type and choices."""
    types = _PYTHON_TYPES.get(option.get("type", "str"))
    if types is None or not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        return False
    return "choices" not in option or value in option["choices"]


class _Coercer:
    """Type checks of the settings against their declared spec, once per distinct value."""

    def __init__(self, spec: Mapping[str, Mapping[str, t.Any]]) -> None:
        self._spec = spec
        self._validators = {name: ArgumentSpecValidator({name: dict(option)}) for name, option in spec.items()}
        self._cache: dict[tuple[str, t.Hashable], tuple[t.Any, str | None]] = {}

    def coerce(self, name: str, value: t.Any) -> tuple[t.Any, str | None]:
        """The value as its declared type, or None and the reason it is not one."""
        option = self._spec.get(name)
        if option is not None and _has_declared_type(option, value):
            return value, None
        strict = _STRICT_TYPES.get(option.get("type")) if option is not None else None
        if strict is not None and not isinstance(value, strict[0]):
            # The roles read the inventory's value itself: "false" would be true to them.
            shown = SECRET_SETTINGS[name](value) if name in SECRET_SETTINGS else value
            return None, "must be %s, got %r (a %s)" % (strict[1], shown, type(value).__name__)
        key = (name, _key(value))
        found = self._cache.get(key)
        if found is None:
            validator = self._validators.get(name)
            if validator is None:
                found = (value, None)
            else:
                result = validator.validate({name: value})
                if result.error_messages:
                    found = (None, "; ".join(_plain_type_error(name, message) for message in result.error_messages))
                else:
                    found = (result.validated_parameters[name], None)
            self._cache[key] = found
        return found


def _plain_type_error(name: str, message: str) -> str:
    """ArgumentSpecValidator's message without Python's type names."""
    match = re.search(r"is of type (?:<class ')?(\w+)'?>? and we were unable to convert to (\w+)", message)
    if match and message.startswith("Elements value"):
        return "must be a list of %s entries, but has an entry of type %s" % (match.group(2), match.group(1))
    if match:
        return "must be of type %s, got a %s" % (match.group(2), match.group(1))
    return message.replace("argument '%s' " % name, "").replace("value of %s " % name, "")


def _network(setting: str, value: t.Any) -> ipaddress.IPv4Network | str:
    """The IPv4 network a setting names, or the problem with it."""
    if isinstance(value, (list, tuple)) or "," in str(value):
        return ("%s %r holds several networks; the cluster is IPv4 only, so give one network such as "
                "10.244.0.0/16." % (setting, value))
    try:
        return parse_subnet(value, setting)
    except NodeNetworkError as exc:
        return str(exc)


def _endpoint_problem(value: str) -> str | None:
    if value == "":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        return "must be host:port (for example api.example.org:6443), got %r" % value
    if not (port.isascii() and port.isdecimal()) or not 1 <= int(port) <= 65535:
        return "has port %r; a port is an integer from 1 to 65535" % port
    if host.startswith("[") and host.endswith("]"):
        return "names an IPv6 address; the cluster is IPv4 only"
    if not HOST_NAME.fullmatch(host):
        return "has host %r, which is neither an IPv4 address nor a DNS name" % host
    return None


def _dns_domain_problem(value: str) -> str | None:
    labels = value.split(".")
    if not value or len(value) > 253 or not all(DNS_LABEL.fullmatch(label) for label in labels):
        return ("%r is not a DNS domain (lower case labels of letters, digits and '-', separated by dots)"
                % value)
    return None


def _user_problem(value: str) -> str | None:
    if value == "root":
        return "is root; Usernetes runs as an unprivileged user"
    if not USER_NAME.fullmatch(value):
        return ("%r is not a valid user name (a lower case letter or '_', then up to 31 lower case letters, "
                "digits, '_' or '-')" % value)
    return None


def default_node_name(inventory_hostname: str) -> str:
    """u7s-<inventory hostname>, lower case, other characters as '-'."""
    return "u7s-" + re.sub(r"[^a-z0-9-]", "-", inventory_hostname.lower())


def _extra_ports(value: t.Any, host: str) -> tuple[list[tuple[str, int, str]], list[str]]:
    """(variable[index], port, protocol) for each entry, and the problems."""
    fix = " Fix: set u7s_extra_ports on host %s to a list such as [{port: 30080, protocol: tcp}]." % host
    ports: list[tuple[str, int, str]] = []
    problems = []
    for index, entry in enumerate(value):
        label = "u7s_extra_ports[%d]" % index
        if not isinstance(entry, Mapping) or "port" not in entry:
            problems.append("Host %s: %s is %r, not a {port, protocol} entry.%s" % (host, label, entry, fix))
            continue
        port = entry["port"]
        protocol = str(entry.get("protocol", "tcp")).lower()
        number = int(port) if isinstance(port, int) and not isinstance(port, bool) else (
            int(port) if isinstance(port, str) and port.strip().isascii() and port.strip().isdecimal() else None)
        if number is None or not 1 <= number <= 65535:
            problems.append("Host %s: %s has port %r; a port is an integer from 1 to 65535.%s"
                            % (host, label, port, fix))
            continue
        if protocol not in ("tcp", "udp"):
            problems.append("Host %s: %s has protocol %r; it must be tcp or udp.%s"
                            % (host, label, entry.get("protocol"), fix))
            continue
        ports.append((label, number, protocol))
    return ports, problems


# What a plan is for: a bring-up checks the inventory against the nodes the hosts run; a reset
# takes them away, so what they run (their recorded subnets and settings) may not refuse it; the
# fleet registry's playbooks (registry) leave the nodes alone, so they read them no more than a reset.
PURPOSES = ("bring-up", "upgrade", "reset", "registry")


def plan_cluster(model: ClusterInput, hosts: Sequence[Mapping[str, t.Any]], purpose: str = "bring-up") -> dict[str, t.Any]:
    """Check the cluster and plan every host's node.

    Returns ``{"problems": [...], "settings": {...}, "control_plane": name, "hosts": {name: {...}}}``;
    ``hosts`` and ``settings`` are only complete when ``problems`` is empty; ``settings`` show secrets
    (u7s_registries' passwords) redacted, as every message does.

    With ``purpose="reset"`` the hosts' recorded nodes are not read: a setting changed since the nodes
    were created, recorded subnets that collide (a half-broken cluster) and hosts outside a ``--limit``
    do not refuse a reset; every subnet is planned as for a new node (a reset uses none of them).
    The inventory itself (types, users, engines, groups, addresses, networks, ports) is checked as ever.
    """
    if purpose not in PURPOSES:
        raise ValueError("purpose must be one of %s, got %r" % (", ".join(PURPOSES), purpose))
    if purpose in ("reset", "registry"):
        hosts = [dict(host, recorded_subnet="", recorded_settings=None) for host in hosts]
    problems = _Problems()
    group = model.cluster_group
    names = [host["name"] for host in hosts]
    if group not in model.groups:
        problems.add(
            "The inventory has no group %s, which u7s_cluster_group names as the group of every cluster host. "
            "Fix: put the cluster's hosts in a group %s (with the children control_plane and workers), "
            "or set u7s_cluster_group to the group that holds them." % (group, group))
    elif not names:
        problems.add(
            "The group %s (u7s_cluster_group) holds no host. Fix: add the cluster's hosts to it." % group)
    if problems.items:
        return {"problems": problems.items, "settings": {}, "control_plane": None, "hosts": {}}

    coercer = _Coercer(model.spec)
    resolved: dict[str, dict[str, t.Any]] = {}

    # Renamed variables, and every setting's type.
    renamed: dict[str, list[str]] = {}
    for host in hosts:
        for old in host.get("renamed") or ():
            renamed.setdefault(old, []).append(host["name"])
    for old, where in renamed.items():
        problems.add(
            "%s: %s is set, but the collection no longer reads it. Fix: rename it to %s "
            "(one name for the whole cluster; see `ansible-doc -t role u7s.cluster.settings`)."
            % (_sentence(describe_hosts(where)), old, RENAMED.get(old, "the setting that replaced it")))

    type_errors: dict[tuple[str, str], list[str]] = {}
    for host in hosts:
        values = {}
        for name, raw in host["settings"].items():
            value, error = coercer.coerce(name, raw)
            if error is not None:
                shown = SECRET_SETTINGS[name](raw) if name in SECRET_SETTINGS else raw
                type_errors.setdefault((name, "%s (got %r)" % (error, shown)), []).append(host["name"])
            values[name] = value
        resolved[host["name"]] = values
    for (name, error), where in type_errors.items():
        problems.add("%s: %s %s. Fix: correct %s in the inventory."
                     % (_sentence(describe_hosts(where)), name, error, name))
    if type_errors:
        # The checks below need every value of its declared type.
        return {"problems": problems.items, "settings": {}, "control_plane": None, "hosts": {}}

    # Cluster-wide settings: the same everywhere.
    first = resolved[names[0]]
    cluster = {name: value for name, value in first.items() if name not in HOST_SETTINGS}
    for name in sorted(cluster):
        if name in CONTROLLER_SETTINGS:
            continue
        by_value: dict[t.Hashable, tuple[t.Any, list[str]]] = {}
        for host_name in names:
            value = resolved[host_name].get(name)
            by_value.setdefault(_key(value), (value, []))[1].append(host_name)
        if len(by_value) > 1:
            shown = SECRET_SETTINGS.get(name, lambda value: value)
            variants = "; ".join("%s on %s" % (json.dumps(shown(value), sort_keys=True, default=str), describe_hosts(where))
                                 for value, where in by_value.values())
            problems.add(
                "%s must be the same on every host of %s (joined kubelets take the control plane's configuration, "
                "and the cluster has one network plan), but it is %s. Fix: set it once in group_vars/%s.yml, "
                "not per host." % (name, group, variants, group))

    _check_cluster_values(cluster, problems)
    if "u7s_registries" in cluster:
        for text in registry_problems(cluster["u7s_registries"], model.missing_files):
            problems.add(text)
    _check_running_nodes(cluster, hosts, problems, purpose == "upgrade")
    control_planes = _check_control_plane(model, cluster["u7s_control_plane_group"], names, problems)
    # The init host: the first control plane, unless it is known to run no node while another runs the
    # cluster (removed with remove-node.yml and kept listed, or replaced): then it joins (init_host).
    control_plane = init_host(control_planes, {host["name"]: host for host in hosts}) if control_planes else None
    control_plane_set = frozenset(control_planes or ())
    if control_planes and len(control_planes) > 1:
        _check_several_control_planes(cluster, cluster["u7s_control_plane_group"], problems)

    # Per host: user, engine, bypass4netns, node name, address, extra ports.
    node_names: dict[str, list[str]] = {}
    bypass: dict[str, bool] = {}
    addresses: dict[str, str] = {}
    extra: dict[str, list[tuple[str, int, str]]] = {}
    checked_users: dict[str, str | None] = {}
    for host in hosts:
        name = host["name"]
        values = resolved[name]
        user = values["u7s_user"]
        if user not in checked_users:
            checked_users[user] = _user_problem(user)
        if checked_users[user]:
            problems.add("Host %s: u7s_user %s. Fix: set u7s_user to an unprivileged account name such as u7s."
                         % (name, checked_users[user]))
        if values["u7s_engine"] in ENGINES_NOT_YET:
            problems.add("Host %s: u7s_engine=%s is not supported yet (%s). Fix: set u7s_engine to docker or podman."
                         % (name, values["u7s_engine"], ENGINES_NOT_YET[values["u7s_engine"]]))
        accelerated = bypass4netns.decide(name, values["u7s_bypass4netns"], values["u7s_engine"], host.get("kernel"))
        if accelerated.refusal:
            problems.add(accelerated.refusal)
        bypass[name] = accelerated.enabled
        node_name = values["u7s_node_name"] or default_node_name(name)
        if not DNS_LABEL.fullmatch(node_name):
            source = "u7s_node_name %s" % node_name if values["u7s_node_name"] else (
                "the node name %s derived from its inventory hostname" % node_name)
            problems.add("Host %s: %s is not a DNS label (lower case letters, digits and '-', at most 63 characters)."
                         " Fix: set u7s_node_name on host %s." % (name, source, name))
        node_names.setdefault(node_name, []).append(name)
        address = _host_address(host, values, problems)
        if address:
            addresses[name] = address
        ports, port_problems = _extra_ports(values["u7s_extra_ports"], name)
        for text in port_problems:
            problems.add(text)
        extra[name] = ports
    for node_name, where in node_names.items():
        if len(where) > 1:
            problems.add(
                "%s would all be the Kubernetes node %s, but node names must be unique. Fix: set u7s_node_name "
                "on all but one of them (an existing node keeps its name)." % (_sentence(describe_hosts(where)), node_name))

    publish_addresses = {host["name"]: _publish_address(host, resolved[host["name"]], addresses, problems)
                         for host in hosts}
    sources = _apiserver_sources(cluster["u7s_firewall_apiserver_sources"], problems)
    networks = _check_networks(cluster, hosts, addresses, problems)
    registry = None
    if "u7s_registry_group" in cluster:
        registry, found = registry_plan(
            cluster, model.registry_hosts, {name: resolved[name]["u7s_user"] for name in names}, addresses,
            model.missing_files, model.generated_ca, purpose)
        for text in found:
            problems.add(text)
    if all(1 <= cluster[setting] <= 65535 for setting, _protocol in NODE_PORTS):
        for text in _port_problems(hosts, resolved, addresses, extra, control_plane_set, registry):
            problems.add(_sentence(text))

    plan: dict[str, t.Any] = {}
    if networks is not None:
        try:
            plan = plan_node_networks(
                [{"name": host["name"], "override": resolved[host["name"]]["u7s_node_subnet"],
                  "recorded": host.get("recorded_subnet") or ""} for host in hosts],
                pool=cluster["u7s_node_subnet_pool"], prefix=cluster["u7s_node_subnet_prefix"],
                reserved=[str(network) for network in networks],
                host_addresses=[addresses.get(host["name"]) or "" for host in hosts],
            )
        except NodeNetworkError as exc:
            problems.add(str(exc))
    unseen = [host["name"] for host in hosts if host.get("recorded_subnet") is None and not host.get("in_play", True)]
    if unseen:
        for host in hosts:
            network = plan.get(host["name"])
            if host.get("in_play", True) and network is not None and network.source == "allocated":
                problems.add(
                    "Host %s needs a node subnet, but the node subnets of %s, outside this run (--limit), are not "
                    "known, so one of them might get the same. Fix: run without --limit (hosts that run a node keep "
                    "their subnet), or set u7s_node_subnet on host %s to a subnet no node uses."
                    % (host["name"], describe_hosts(unseen), host["name"]))
    kept_by = {str(network.subnet): name for name, network in plan.items()}
    for host in hosts:
        recorded = host.get("recorded_subnet") or ""
        network = plan.get(host["name"])
        if recorded and network is not None and str(network.subnet) != recorded:
            keeper = [kept_by[recorded]] if recorded in kept_by else []
            problems.add(
                "Host %s: its node network uses %s, which %s uses as well (a state file copied with a cloned "
                "host?); an existing node is never moved to another subnet. Fix: on the one of them whose node "
                "container has never run, remove the cluster user's ~/.local/state/u7s/node.json."
                % (host["name"], recorded, describe_hosts(keeper) if keeper else "another host"))
    if problems.items:
        return {"problems": problems.items, "settings": _shown(cluster), "control_plane": control_plane, "hosts": {}}

    # bypass4netns leaves the cluster's own networks to the nodes' namespaces: the pool every node
    # network comes from and any node subnet set outside it (the same list on every host).
    bypass_ignored = bypass4netns.ignore_subnets(
        cluster["u7s_pod_cidr"], cluster["u7s_service_cidr"],
        [cluster["u7s_node_subnet_pool"], *(str(network.subnet) for network in plan.values())])
    planned = {}
    for host in hosts:
        name = host["name"]
        values = resolved[name]
        network = plan[name]
        named = [(setting, cluster[setting], protocol) for setting, protocol in _node_ports(name, control_plane_set)]
        named += extra[name]
        bind = publish_addresses[name]
        planned[name] = {
            "user": values["u7s_user"],
            "engine": values["u7s_engine"],
            "allow_cgroup_v1": values["u7s_allow_cgroup_v1"],
            "bypass4netns": bypass[name],
            "bypass4netns_ignore_subnets": bypass_ignored,
            "node_name": values["u7s_node_name"] or default_node_name(name),
            "host_address": addresses.get(name),
            "subnet": str(network.subnet),
            "gateway": str(network.gateway),
            "node_ip": str(network.node_ip),
            "subnet_source": network.source,
            "running_version": (host.get("recorded_settings") or {}).get("u7s_kubernetes_version"),
            "publish_address": bind,
            "published_ports": [{"port": port, "protocol": protocol} for _label, port, protocol in named],
            "publish_specs": ["%s:%d:%d/%s" % (bind, port, port, protocol) for _label, port, protocol in named],
            "port_names": {"%d/%s" % (port, protocol): label for label, port, protocol in named},
            # The firewall filters the node's own ports; u7s_extra_ports are the user's to expose.
            "filtered_ports": [{"port": cluster[setting], "protocol": protocol, "sources": NODE_PORT_SOURCES[setting]}
                               for setting, protocol in _node_ports(name, control_plane_set)],
        }
    control_planes = control_planes or []  # never empty here: the group was checked
    several = len(control_planes) > 1
    control_plane_addresses = [planned[name]["host_address"] for name in control_planes]
    # The init host first (the roles join control_planes[1:]); the addresses stay in inventory order.
    control_planes = [control_plane, *(name for name in control_planes if name != control_plane)]
    endpoint_hosts = None
    if cluster["u7s_control_plane_endpoint"]:
        endpoint = cluster["u7s_control_plane_endpoint"]
    elif several:
        # No site name: every node and the controller resolve this one to all control planes.
        endpoint = "%s:%d" % (cluster["u7s_control_plane_endpoint_name"], cluster["u7s_port_apiserver"])
        endpoint_hosts = {"name": cluster["u7s_control_plane_endpoint_name"],
                          "addresses": [address for address in control_plane_addresses if address]}
    else:
        endpoint = ("%s:%d" % (control_plane_addresses[0], cluster["u7s_port_apiserver"])
                    if control_plane_addresses[0] else None)
    recorded = {setting: cluster[setting] for setting in RECORDED_SETTINGS}
    if several:
        # Only with several control planes, so that a single control plane's record stays as it was.
        recorded["api_endpoint"] = endpoint
    if purpose not in ("reset", "registry"):
        _check_control_plane_mode(hosts, control_planes, endpoint, problems)
        if problems.items:
            return {"problems": problems.items, "settings": _shown(cluster), "control_plane": control_plane,
                    "hosts": {}}
    return {"problems": [], "settings": _shown(cluster), "control_plane": control_plane, "api_endpoint": endpoint,
            "control_planes": control_planes, "control_plane_addresses": control_plane_addresses,
            # None and "" with one control plane, or a site endpoint: nothing resolves a name of ours.
            "endpoint_hosts": endpoint_hosts,
            "controller_hosts_file": cluster["u7s_controller_hosts_file"] if endpoint_hosts else "",
            "hosts": planned, "host_addresses": sorted(set(addresses.values()), key=ipaddress.ip_address),
            "apiserver_sources": sources, "recorded_settings": recorded, "registry": registry}


def _shown(cluster: Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The cluster's settings as the plan returns them: secrets redacted (the roles read the settings themselves)."""
    return {name: SECRET_SETTINGS[name](value) if name in SECRET_SETTINGS else value for name, value in cluster.items()}


def _version(text: t.Any) -> tuple[int, int, int] | None:
    match = KUBERNETES_VERSION.fullmatch(str(text))
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def _check_running_nodes(cluster: Mapping[str, t.Any], hosts: Sequence[Mapping[str, t.Any]],
                         problems: _Problems, upgrade: bool = False) -> None:
    """Settings changed since the hosts' nodes were created with them.

    The Kubernetes version is playbooks/upgrade.yml's to change (``upgrade``): one minor up at
    most, never down; every other recorded setting stays.
    """
    changed: dict[tuple[str, t.Hashable], tuple[t.Any, list[str]]] = {}
    for host in hosts:
        recorded = host.get("recorded_settings")
        if not isinstance(recorded, Mapping):
            continue
        for setting in RECORDED_SETTINGS:
            if setting in recorded and _key(recorded[setting]) != _key(cluster[setting]):
                changed.setdefault((setting, _key(recorded[setting])), (recorded[setting], []))[1].append(host["name"])
    target = cluster["u7s_kubernetes_version"]
    for (setting, _value_key), (value, where) in changed.items():
        was = json.dumps(value, sort_keys=True)
        nodes = "the node%s on %s run%s" % ("s" if len(where) > 1 else "", describe_hosts(where),
                                            "" if len(where) > 1 else "s")
        if setting == "u7s_kubernetes_version":
            problem = _version_change_problem(str(value), str(target), upgrade)
            if problem:
                problems.add("u7s_kubernetes_version is %s, but %s %s: %s" % (target, nodes, value, problem))
            continue
        problems.add(
            "%s is %s, but %s with %s; changing it on a running cluster is not supported yet "
            "(the nodes' Kubernetes keeps the old value). Fix: set %s back to %s."
            % (setting, json.dumps(cluster[setting], sort_keys=True), nodes, was, setting, was))


def _version_change_problem(running: str, target: str, upgrade: bool) -> str | None:
    """Why running nodes may not move from ``running`` to ``target`` (None: they may, in an upgrade)."""
    old, new = _version(running), _version(target)
    if not upgrade:
        return ("site.yml does not change the Kubernetes version of running nodes. Fix: run playbooks/upgrade.yml "
                "to move them to %s one node at a time, or set u7s_kubernetes_version back to %s." % (target, running))
    if old is None or new is None:
        return None  # _check_cluster_values names a target that is not a version; a recorded one is the node's.
    if new < old:
        return ("a downgrade is not supported (kubeadm upgrades only). Fix: set u7s_kubernetes_version to %s or "
                "a later release." % running)
    if new[0] != old[0] or new[1] > old[1] + 1:
        return ("Kubernetes upgrades one minor version at a time (kubeadm refuses skipping one). Fix: upgrade to the "
                "newest v%d.%d patch first, then to %s." % (old[0], old[1] + 1, target))
    return None


def _check_cluster_values(cluster: Mapping[str, t.Any], problems: _Problems) -> None:
    version = cluster["u7s_kubernetes_version"]
    if not KUBERNETES_VERSION.fullmatch(version):
        problems.add("u7s_kubernetes_version %r is not a Kubernetes release such as v1.36.4. "
                     "Fix: set u7s_kubernetes_version to the version the node image carries." % version)
    found = _dns_domain_problem(cluster["u7s_dns_domain"])
    if found:
        problems.add("u7s_dns_domain: %s. Fix: set u7s_dns_domain to a domain such as cluster.local." % found)
    found = _endpoint_problem(cluster["u7s_control_plane_endpoint"])
    if found:
        problems.add("u7s_control_plane_endpoint %s. Fix: set it to host:port of the API server (or a load balancer "
                     "in front of it), or leave it empty for the control-plane host's address." % found)
    taken = sorted(set(cluster["u7s_kubelet_config"]) & set(KUBELET_FIELDS_OF_SETTINGS))
    if taken:
        problems.add("u7s_kubelet_config sets %s, which the settings %s own (the node publishes one port, containerd "
                     "drives cgroups one way). Fix: remove %s from u7s_kubelet_config and set %s instead."
                     % (", ".join(taken), ", ".join(KUBELET_FIELDS_OF_SETTINGS[key] for key in taken),
                        ", ".join(taken), ", ".join(KUBELET_FIELDS_OF_SETTINGS[key] for key in taken)))
    if "u7s_drain_timeout" in cluster and cluster["u7s_drain_timeout"] < 1:
        problems.add("u7s_drain_timeout is %d; the drain needs at least a second. Fix: set u7s_drain_timeout to the "
                     "seconds the node's pods may take to leave, such as 300." % cluster["u7s_drain_timeout"])
    for setting, _protocol in NODE_PORTS:
        if not 1 <= cluster[setting] <= 65535:
            problems.add("%s is %d; a port is an integer from 1 to 65535. Fix: set %s to a free port."
                         % (setting, cluster[setting], setting))


def _check_control_plane(model: ClusterInput, group: str, names: Sequence[str], problems: _Problems) -> list[str] | None:
    """The control-plane hosts in inventory order (the first runs `kubeadm init`), or None (with a problem)."""
    members = model.groups.get(group)
    if members is None:
        problems.add("The inventory has no group %s (u7s_control_plane_group), whose first host runs `kubeadm init`. "
                     "Fix: add a group %s holding one (or 3, or 5) hosts of %s." % (group, group, model.cluster_group))
        return None
    found = count_problem(group, list(members))
    if found:
        problems.add(found)
        return None
    known = set(names)
    outside = [member for member in members if member not in known]
    if outside:
        problems.add("The control-plane %s (group %s) %s not in %s (u7s_cluster_group). Fix: make %s a child "
                     "group of %s." % (describe_hosts(outside), group, "is" if len(outside) == 1 else "are",
                                       model.cluster_group, group, model.cluster_group))
        return None
    return list(members)


def _check_several_control_planes(cluster: Mapping[str, t.Any], group: str, problems: _Problems) -> None:
    """What several control planes need of the settings: kubeadm's etcd ports, an endpoint name."""
    for setting, port in KUBEADM_ETCD_PORTS.items():
        if cluster[setting] != port:
            problems.add("%s is %d, but with several control planes (group %s) it must be %d: kubeadm joins a "
                         "control plane's etcd member by that fixed port. Fix: set %s to %d (another user's cluster on "
                         "the same hosts needs one control plane, or other hosts)."
                         % (setting, cluster[setting], group, port, setting, port))
    if not cluster["u7s_control_plane_endpoint"]:
        found = endpoint_name_problem(cluster["u7s_control_plane_endpoint_name"])
        if found:
            problems.add(found)
        hosts_file = cluster["u7s_controller_hosts_file"]
        if hosts_file and not str(hosts_file).startswith("/"):
            problems.add("u7s_controller_hosts_file %r is not an absolute path: the controller would write the "
                         "endpoint's block to a file relative to where ansible-playbook runs. Fix: set it to /etc/hosts "
                         "(the default), or to \"\" and resolve %s on the controller yourself."
                         % (hosts_file, cluster["u7s_control_plane_endpoint_name"]))


def _check_control_plane_mode(hosts: Sequence[Mapping[str, t.Any]], control_planes: Sequence[str],
                              endpoint: str | None, problems: _Problems) -> None:
    """Running nodes whose cluster had another shape: one control plane grown to several, or back.

    A node created with one control plane records no "api_endpoint" (its etcd member and the
    cluster's endpoint are bound to the node container's own address); one created with several
    records the endpoint every node and certificate names.
    """
    several = len(control_planes) > 1
    single_grown: list[str] = []
    shrunk: list[str] = []
    moved: list[str] = []
    for host in hosts:
        recorded = host.get("recorded_settings")
        if not isinstance(recorded, Mapping):
            continue
        was = recorded.get("api_endpoint")
        if several and was is None:
            single_grown.append(host["name"])
        elif not several and was is not None:
            shrunk.append(host["name"])
        elif several and endpoint is not None and was != endpoint:
            moved.append(host["name"])
    if single_grown:
        problems.add(
            "The inventory holds %d control planes, but the nodes on %s run a cluster created with one: its etcd "
            "member and API endpoint are bound to the first node container's own address, and growing it in place is "
            "not supported. Fix: keep one host in %s (the others as workers), or build a new cluster with several "
            "control planes (playbooks/reset.yml, then site.yml; back up etcd first)."
            % (len(control_planes), describe_hosts(single_grown), "the control-plane group"))
    if shrunk:
        problems.add(
            "The inventory holds one control plane, but the nodes on %s run a cluster created with several; their "
            "endpoint and etcd members stay. Fix: put the control-plane hosts back in the control-plane group (to "
            "remove one, use playbooks/remove-node.yml and add another in its place)." % describe_hosts(shrunk))
    if moved:
        problems.add(
            "The API endpoint is now %s, but the nodes on %s were created with another (u7s_control_plane_endpoint, "
            "u7s_control_plane_endpoint_name or u7s_port_apiserver changed); certificates and kubeconfigs name the "
            "old one. Fix: set those settings back to what the nodes' ~/.local/state/u7s/node.json records as "
            "api_endpoint." % (endpoint, describe_hosts(moved)))


def _host_address(host: Mapping[str, t.Any], values: Mapping[str, t.Any], problems: _Problems) -> str | None:
    """The address other hosts reach this one by, or None (with a problem) when it is unusable."""
    name = host["name"]
    given = str(values["u7s_host_ip"] or "").strip()
    address = given or host.get("default_ipv4") or ""
    if not address:
        if host.get("all_ipv4") is not None:
            problems.add("Host %s has no default route, so its address is unknown. Fix: set u7s_host_ip on host %s "
                         "to the address other hosts reach it by." % (name, name))
        elif host.get("in_play", True):
            problems.add("Host %s: its address is unknown (no facts were gathered and u7s_host_ip is empty). Fix: "
                         "set u7s_host_ip on host %s, or gather facts." % (name, name))
        return None
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        problems.add("Host %s: u7s_host_ip %r is not an IPv4 address. Fix: set u7s_host_ip on host %s to the "
                     "address other hosts reach it by." % (name, address, name))
        return None
    if not isinstance(parsed, ipaddress.IPv4Address):
        problems.add("Host %s: u7s_host_ip %s is IPv6; the cluster is IPv4 only. Fix: set u7s_host_ip on host %s "
                     "to its IPv4 address." % (name, address, name))
        return None
    known = host.get("all_ipv4")
    if given and known is not None and str(parsed) not in known:
        problems.add("Host %s: u7s_host_ip %s is not one of its addresses (%s). Fix: set u7s_host_ip on host %s "
                     "to the address other hosts reach it by." % (name, parsed, ", ".join(known) or "none", name))
        return None
    return str(parsed)


def _is_ipv4(value: t.Any) -> bool:
    try:
        return isinstance(ipaddress.ip_address(str(value).strip()), ipaddress.IPv4Address)
    except ValueError:
        return False


def _check_networks(
    cluster: Mapping[str, t.Any],
    hosts: Sequence[Mapping[str, t.Any]],
    addresses: Mapping[str, str],
    problems: _Problems,
) -> list[ipaddress.IPv4Network] | None:
    """The pod and service networks (reserved for the subnet plan), or None when they are unusable."""
    parsed = {}
    for setting in ("u7s_pod_cidr", "u7s_service_cidr", "u7s_node_subnet_pool"):
        network = _network(setting, cluster[setting])
        if isinstance(network, str):
            problems.add("%s Fix: set %s in group_vars to an IPv4 network." % (network, setting))
        else:
            parsed[setting] = network
    pod = parsed.get("u7s_pod_cidr")
    service = parsed.get("u7s_service_cidr")
    if pod is not None:
        if pod.prefixlen > NODE_POD_PREFIX:
            problems.add("u7s_pod_cidr %s is smaller than one node's pod range (/%d). Fix: use a /%d or larger "
                         "range, such as 10.244.0.0/16." % (pod, NODE_POD_PREFIX, NODE_POD_PREFIX - 1))
        elif 1 << (NODE_POD_PREFIX - pod.prefixlen) < len(hosts):
            problems.add("u7s_pod_cidr %s holds pod ranges (/%d) for %d nodes, but the cluster has %d hosts. Fix: "
                         "use a larger u7s_pod_cidr (a /%d holds %d)." % (
                             pod, NODE_POD_PREFIX, 1 << (NODE_POD_PREFIX - pod.prefixlen), len(hosts),
                             _prefix_for(len(hosts)), 1 << (NODE_POD_PREFIX - _prefix_for(len(hosts)))))
    if service is not None:
        if service.prefixlen < MAX_SERVICE_PREFIX:
            problems.add("u7s_service_cidr %s is larger than kube-apiserver allows (/%d at most). Fix: use a /%d "
                         "or smaller range, such as 10.96.0.0/16." % (service, MAX_SERVICE_PREFIX, MAX_SERVICE_PREFIX))
        elif service.prefixlen > MIN_SERVICE_SIZE_PREFIX:
            problems.add("u7s_service_cidr %s is too small for the API and DNS services. Fix: use a /%d or larger "
                         "range, such as 10.96.0.0/16." % (service, MIN_SERVICE_SIZE_PREFIX))
    if pod is not None and service is not None and pod.overlaps(service):
        problems.add("u7s_pod_cidr %s and u7s_service_cidr %s overlap. Fix: choose ranges apart, such as "
                     "10.244.0.0/16 and 10.96.0.0/16." % (pod, service))
    for setting, network in (("u7s_pod_cidr", pod), ("u7s_service_cidr", service)):
        if network is None:
            continue
        inside = [name for name, address in addresses.items() if ipaddress.IPv4Address(address) in network]
        if inside:
            problems.add("%s %s contains the address of %s; the hosts would be unreachable from pods. Fix: choose a "
                         "%s apart from the hosts' network." % (setting, network, describe_hosts(inside), setting))
    pool = parsed.get("u7s_node_subnet_pool")
    prefix = cluster["u7s_node_subnet_prefix"]
    blocked = False
    if not MIN_PREFIX <= prefix <= MAX_PREFIX:
        blocked = True
        problems.add("u7s_node_subnet_prefix is %d; a node subnet must be a /%d to /%d. Fix: set "
                     "u7s_node_subnet_prefix to 24 (a /24 per node)." % (prefix, MIN_PREFIX, MAX_PREFIX))
    elif pool is not None and prefix < pool.prefixlen:
        blocked = True
        problems.add("u7s_node_subnet_prefix /%d is larger than u7s_node_subnet_pool %s itself. Fix: set "
                     "u7s_node_subnet_prefix to %d or more, or use a larger pool." % (prefix, pool, pool.prefixlen))
    for setting, network in (("u7s_pod_cidr", pod), ("u7s_service_cidr", service)):
        # Partly is fine (allocation skips the reserved part); wholly leaves nothing to allocate.
        if pool is not None and network is not None and pool.subnet_of(network):
            blocked = True
            problems.add("u7s_node_subnet_pool %s lies inside %s %s, where no node subnet may lie. Fix: choose a "
                         "u7s_node_subnet_pool outside it (an existing node keeps its subnet)."
                         % (pool, setting, network))
    if pod is None or service is None or pool is None or blocked or pod.overlaps(service):
        return None
    return [pod, service]


def _prefix_for(count: int) -> int:
    prefix = NODE_POD_PREFIX
    while prefix > 0 and 1 << (NODE_POD_PREFIX - prefix) < count:
        prefix -= 1
    return prefix


def _node_ports(name: str, control_planes: t.Collection[str]) -> list[tuple[str, str]]:
    """The node ports (setting, protocol) host ``name`` publishes (``control_planes``: a set, or a short list)."""
    published = []
    for setting, protocol in NODE_PORTS:
        hosts = NODE_PORT_HOSTS[setting]
        if (hosts == "all" or (hosts == "control_plane" and name in control_planes)
                or (hosts == "several_control_planes" and len(control_planes) > 1 and name in control_planes)):
            published.append((setting, protocol))
    return published


def _publish_address(host: Mapping[str, t.Any], values: Mapping[str, t.Any], addresses: Mapping[str, str],
                     problems: _Problems) -> str:
    """The host address the node's ports are bound to (u7s_publish_address, else the host's address)."""
    name = host["name"]
    given = str(values["u7s_publish_address"] or "").strip()
    if not given:
        return addresses.get(name) or ANY_IPV4
    try:
        parsed = ipaddress.ip_address(given)
    except ValueError:
        parsed = None
    if not isinstance(parsed, ipaddress.IPv4Address):
        problems.add("Host %s: u7s_publish_address %r is not an IPv4 address. Fix: leave u7s_publish_address empty "
                     "(the host's address), or set it to %s (every address) or one of the host's addresses."
                     % (name, given, ANY_IPV4))
        return given
    known = host.get("all_ipv4")
    if str(parsed) != ANY_IPV4 and known is not None and str(parsed) not in known:
        problems.add("Host %s: u7s_publish_address %s is not one of its addresses (%s). Fix: leave "
                     "u7s_publish_address empty (the host's address), or set it to %s or one of the host's addresses."
                     % (name, parsed, ", ".join(known) or "none", ANY_IPV4))
    return str(parsed)


def _apiserver_sources(value: Sequence[t.Any], problems: _Problems) -> list[str]:
    """u7s_firewall_apiserver_sources as networks (an address is a /32 or /128)."""
    networks = []
    for item in value:
        try:
            networks.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError:
            problems.add("u7s_firewall_apiserver_sources holds %r, which is neither an address nor a network. Fix: "
                         "list addresses or networks such as 192.0.2.10 or 198.51.100.0/24." % (item,))
    return networks


def _port_problems(
    hosts: Sequence[Mapping[str, t.Any]],
    resolved: Mapping[str, Mapping[str, t.Any]],
    addresses: Mapping[str, str],
    extra: Mapping[str, list[tuple[str, int, str]]],
    control_planes: t.Collection[str],
    registry: Mapping[str, t.Any] | None = None,
) -> list[str]:
    records = []
    protocols = dict(NODE_PORTS)
    for host in hosts:
        name = host["name"]
        ports: dict[str, t.Any] = {setting: resolved[name][setting] for setting, _protocol in _node_ports(name, control_planes)}
        if registry is not None and registry["host"] == name:
            # The fleet registry listens on the host's addresses too (every one: its port is bound to all).
            ports["u7s_registry_port"] = registry["port"]
        for label, port, protocol in extra[name]:
            key = "%s (%s)" % (label, protocol)
            ports[key] = port
            protocols[key] = protocol
        records.append({
            "name": name,
            # A host outside a --limit run has no known address: only its own ports are checked.
            "address": addresses.get(name),
            "user": resolved[name]["u7s_user"],
            "ports": ports,
        })
    return port_conflicts(records, protocols)
