# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The host firewall of one cluster user: an nftables table of its own.

Pure logic on plain data, no I/O; the ``u7s.cluster.nft_ruleset`` filter renders
the file the ``firewall`` role loads with ``nft -f``.

The table only narrows: its one base chain drops packets to the node's own
ports from addresses the cluster does not know, and accepts (within the table)
everything else, so the host's other tables and rules decide as before. Loading
the file replaces the table in one transaction (``table`` + ``delete table`` +
the new table): there is never a moment without the rules, and a re-load
leaves exactly one copy.
"""

from __future__ import annotations

import ipaddress
import re
import typing as t
from collections.abc import Mapping, Sequence

SOURCES = ("cluster", "apiserver", "control_planes")
# What each source class's drop rule says it refused.
_NOT_FROM = {
    "cluster": "the cluster's hosts",
    "apiserver": "the API server's sources",
    "control_planes": "the control planes",
}
PROTOCOLS = ("tcp", "udp")
# nftables identifiers: letters, digits, underscore; the user name is folded into one.
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]")


class FirewallError(ValueError):
    """The input does not have the documented shape."""


def table_name(user: str) -> str:
    """The table of ``user``'s cluster: u7s_<user>, other characters as '_' plus a short checksum."""
    folded = _NOT_IDENTIFIER.sub("_", user)
    if folded != user:
        # Two users folding to one name (a.b, a_b) keep distinct tables.
        folded += "_%04x" % (sum(ord(char) * (index + 1) for index, char in enumerate(user)) % 0x10000)
    return "u7s_" + folded


def _networks(values: t.Iterable[t.Any], what: str) -> tuple[list[str], list[str]]:
    """The values as IPv4 and IPv6 networks, without duplicates, in a stable order."""
    found: dict[int, set[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {4: set(), 6: set()}
    for value in values:
        try:
            network = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            raise FirewallError("%s holds %r, which is neither an address nor a network." % (what, value)) from None
        found[network.version].add(network)
    return ([str(network) for network in sorted(found[4])], [str(network) for network in sorted(found[6])])


def _set(name: str, kind: str, elements: Sequence[str]) -> list[str]:
    lines = ["\tset %s {" % name, "\t\ttype %s" % kind, "\t\tflags interval"]
    if elements:
        lines.append("\t\telements = { %s }" % ", ".join(elements))
    lines.append("\t}")
    return lines


def nft_ruleset(
    user: str,
    ports: Sequence[Mapping[str, t.Any]],
    cluster_sources: Sequence[t.Any],
    apiserver_sources: Sequence[t.Any] = (),
    control_plane_sources: Sequence[t.Any] = (),
) -> str:
    """The nft file for ``user``'s cluster on one host.

    ``ports``: the node ports the host publishes, each ``{port, protocol, sources}``
    with sources ``cluster`` (the inventory's host addresses), ``apiserver``
    (those and ``apiserver_sources``: the controller, admin networks) or
    ``control_planes`` (``control_plane_sources``: the control-plane hosts'
    addresses, for etcd). The sets of a source class no port uses are left out,
    so a file without ``control_planes`` ports is what it was before that class.
    """
    if not isinstance(user, str) or not user:
        raise FirewallError("The cluster user must be a non-empty string, got %r." % (user,))
    if isinstance(ports, (str, bytes)) or not isinstance(ports, Sequence):
        raise FirewallError("The ports must be a list of {port, protocol, sources}, got %s." % type(ports).__name__)
    cluster = _networks(cluster_sources, "The cluster's host addresses")
    apiserver = _networks(list(cluster_sources) + list(apiserver_sources), "The API server's sources")
    allowed = {"cluster": cluster, "apiserver": apiserver,
               "control_planes": _networks(control_plane_sources, "The control planes' addresses")}

    rules = []
    for index, port in enumerate(ports):
        if not isinstance(port, Mapping):
            raise FirewallError("Port %d is not a dictionary but %s." % (index + 1, type(port).__name__))
        number, protocol, sources = port.get("port"), port.get("protocol", "tcp"), port.get("sources")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            raise FirewallError("Port %d: %r is not a port number." % (index + 1, number))
        if protocol not in PROTOCOLS:
            raise FirewallError("Port %d: protocol %r is not tcp or udp." % (index + 1, protocol))
        if sources not in SOURCES:
            raise FirewallError("Port %d: sources %r is not one of %s." % (index + 1, sources, ", ".join(SOURCES)))
        rules += [
            "\t\t%s dport %d ip saddr @%s_v4 accept" % (protocol, number, sources),
            "\t\t%s dport %d ip6 saddr @%s_v6 accept" % (protocol, number, sources),
            # Counted, so a test (or an operator) can see what was refused.
            "\t\t%s dport %d counter drop comment \"not from %s\"" % (protocol, number, _NOT_FROM[sources]),
        ]

    table = table_name(user)
    lines = [
        "# The u7s.cluster firewall of the cluster of user %s (generated; the firewall role rewrites it)." % user,
        "# Replaces the table in one transaction: declare it (so the delete cannot fail), delete, define.",
        "table inet %s" % table,
        "delete table inet %s" % table,
        "table inet %s {" % table,
    ]
    used = {port["sources"] for port in ports}
    for kind in SOURCES:
        if kind == "control_planes" and kind not in used:
            continue
        lines += _set("%s_v4" % kind, "ipv4_addr", allowed[kind][0])
        lines += _set("%s_v6" % kind, "ipv6_addr", allowed[kind][1])
    lines += [
        "\tchain input {",
        # Before the usual filter chains, so the drop happens whatever they accept.
        "\t\ttype filter hook input priority filter - 10; policy accept;",
        # The host's own connections (a node reaching its own API server by the host address) stay local.
        "\t\tiif \"lo\" accept",
        *rules,
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


# --- Opening the node's ports in a firewall that rejects by default (firewalld, ufw) ----------------
#
# The table above only narrows: on a host where firewalld (or ufw) runs, that firewall's own chains
# reject a port it has not opened, whatever the table accepts. So the node's filtered ports are also
# opened there (firewalld) or must be (ufw, see ufw_missing); the table still limits the sources.


def port_spec(port: Mapping[str, t.Any]) -> str:
    """'<port>/<protocol>' as firewalld and ufw spell a port (the protocol defaults to tcp)."""
    return "%d/%s" % (port["port"], port.get("protocol", "tcp"))


def _split_spec(spec: str) -> tuple[int, int, str | None]:
    """A firewalld or ufw port spec ('8472/udp', '9000-9100/tcp', '10250', '6000:6007/tcp') as a range."""
    numbers, _slash, protocol = spec.strip().partition("/")
    low, sep, high = numbers.replace(":", "-").partition("-")
    try:
        first = int(low)
        last = int(high) if sep else first
    except ValueError:
        raise FirewallError("%r is not a port or a port range." % spec) from None
    return first, last, (protocol or None)


def _covers(specs: t.Iterable[str], spec: str) -> bool:
    """Whether one of SPECS (ports, ranges; no protocol means both) allows the single port SPEC."""
    port, _last, protocol = _split_spec(spec)
    for allowed in specs:
        first, last, allowed_protocol = _split_spec(allowed)
        if first <= port <= last and allowed_protocol in (None, protocol):
            return True
    return False


def firewalld_info(text: str) -> dict[str, str]:
    """The 'key: value' lines of ``firewall-cmd --info-zone`` or ``--info-service`` (the name line skipped)."""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and " " not in key:
            info[key] = value.strip()
    return info


def firewalld_allowed(zone_info: str, service_infos: Mapping[str, str] = ()) -> list[str]:
    """The port specs a firewalld zone lets in, from ``--info-zone`` and ``--info-service`` of its services.

    A zone whose target is ACCEPT lets in everything ('1-65535' for both protocols); a protocol
    the zone allows (``protocols: tcp``) lets in every port of it.
    """
    zone = firewalld_info(zone_info)
    if zone.get("target", "default") == "ACCEPT":
        return ["1-65535"]
    allowed = zone.get("ports", "").split()
    allowed += ["1-65535/%s" % protocol for protocol in zone.get("protocols", "").split() if protocol in PROTOCOLS]
    services = dict(service_infos or {})
    for service in zone.get("services", "").split():
        allowed += firewalld_info(services.get(service, "")).get("ports", "").split()
    return allowed


def firewalld_plan(
    ports: Sequence[Mapping[str, t.Any]],
    zone: str,
    allowed: Sequence[str],
    recorded: t.Any = None,
) -> dict[str, t.Any]:
    """What to open and close in firewalld, and what to record, for one cluster user's node.

    ``ports``: the node's filtered ports ({port, protocol}); ``zone``: the zone that serves the host's
    address; ``allowed``: the port specs that zone lets in permanently (firewalld_allowed), including
    the ports this collection opened before; ``recorded``: the state file ({"opened": [{zone, port}]})
    or None.

    The collection owns the ports it recorded; a port firewalld allowed before that is not recorded is
    the site's, and is neither opened nor ever closed. Returns ``open`` (port specs to enable in
    ``zone``), ``close`` ([{zone, port}] recorded but no longer wanted: the port is gone or the zone
    changed), ``record`` (the state once the ports are open) and ``pending`` (the state to write before
    changing firewalld: the record plus what is still to close, so an interrupted run forgets nothing).
    """
    if not isinstance(zone, str) or not zone:
        raise FirewallError("The firewalld zone must be a non-empty string, got %r." % (zone,))
    previous = []
    for entry in (recorded or {}).get("opened", []) if isinstance(recorded, Mapping) else []:
        if isinstance(entry, Mapping) and entry.get("zone") and entry.get("port"):
            item = {"zone": str(entry["zone"]), "port": str(entry["port"])}
            if item not in previous:
                previous.append(item)
    ours = [entry["port"] for entry in previous if entry["zone"] == zone]
    # The site's: what the zone allows, except the single ports we opened ourselves.
    site = [spec for spec in allowed if spec not in ours]
    wanted = []
    for port in ports:
        spec = port_spec(port)
        if spec not in wanted and not _covers(site, spec):
            wanted.append(spec)
    record = [{"zone": zone, "port": spec} for spec in wanted]
    close = [entry for entry in previous if entry not in record]
    return {
        "open": wanted,
        "close": close,
        "record": {"opened": record},
        "pending": {"opened": record + close},
    }


def ufw_missing(status: str, ports: Sequence[Mapping[str, t.Any]]) -> list[str]:
    """The node's ports that an active ufw (``ufw status verbose``) lets in from nowhere.

    Any ALLOW rule for the port (or a range or protocol-less rule that covers it) counts, whatever its
    source: the cluster's table still narrows the sources. Rules bound to an interface or to an
    address other than 'Anywhere' count too, as does an incoming default of allow: ufw decides on those,
    and they are the site's choice. Application profiles (OpenSSH) are not resolved.
    """
    if re.search(r"Default:.*\ballow \(incoming\)", status):
        return []
    allowed = []
    for line in status.splitlines():
        fields = line.split()
        if "ALLOW" not in fields or "OUT" in fields or "FWD" in fields:
            continue
        if fields[0] == "Anywhere":
            # "ufw allow from <source>": every port, from that source.
            allowed.append("1-65535")
            continue
        if not fields[0][:1].isdigit():
            continue  # an application profile (OpenSSH): its ports are not listed here
        # "8472/udp", "6000:6007/tcp", "10250", "10250,10255/tcp" (a list of ports), "22/tcp (v6)".
        first, _slash, protocol = fields[0].partition("/")
        for part in first.split(","):
            allowed.append(part + ("/" + protocol if protocol else ""))
    return [port_spec(port) for port in ports if not _covers(allowed, port_spec(port))]


def interface_of(address: str, facts: Mapping[str, t.Any]) -> str | None:
    """The network interface that carries ADDRESS, from a host's Ansible facts (None if none does)."""
    try:
        wanted = ipaddress.ip_address(str(address))
    except ValueError:
        return None
    for name in facts.get("interfaces", []) or []:
        device = facts.get(str(name).replace("-", "_")) or facts.get(str(name)) or {}
        if not isinstance(device, Mapping):
            continue
        ipv4 = device.get("ipv4")
        entries = ([ipv4] if isinstance(ipv4, Mapping) else list(ipv4 or []))
        entries += list(device.get("ipv4_secondaries") or []) + list(device.get("ipv6") or [])
        for entry in entries:
            try:
                if isinstance(entry, Mapping) and ipaddress.ip_address(str(entry.get("address"))) == wanted:
                    return str(name)
            except ValueError:
                continue
    return None
