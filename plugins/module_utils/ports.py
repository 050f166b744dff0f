# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Check the ports each host's cluster publishes.

Pure logic on plain data, no I/O; the cluster model (:mod:`cluster_model`, the
``u7s.cluster.cluster_plan`` action) calls :func:`port_conflicts` on the controller.

Published ports (one record per host)::

    {
        "name": "node1", "address": "192.0.2.10", "user": "u7s",
        "ports": {"etcd": 2379, "apiserver": 6443, "kubelet": 10250, "vxlan": 8472},
        "unprivileged_port_start": 1024,  # net.ipv4.ip_unprivileged_port_start; None for 1024
    }
"""

from __future__ import annotations

import ipaddress
import typing as t
from collections.abc import Mapping, Sequence

from ansible_collections.u7s.cluster.plugins.module_utils.values import is_empty

PROTOCOLS = ("tcp", "udp")
DEFAULT_PROTOCOL = "tcp"
DEFAULT_UNPRIVILEGED_PORT_START = 1024
SYSCTL_UNPRIVILEGED_PORT_START = "net.ipv4.ip_unprivileged_port_start"


def _port_number(value: t.Any) -> int | None:
    """The port as an int, None when it is no integer (bools and floats are none)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdecimal():
        return int(value.strip())
    return None


def _describe(record: Mapping[str, t.Any]) -> str:
    user = record.get("user")
    return "host %s (user %s)" % (record.get("name"), user) if user else "host %s" % record.get("name")


def port_conflicts(records: t.Any, protocols: t.Any = None) -> list[str]:
    """Problems with the ports each host's cluster publishes, one message each; empty when fine.

    ``protocols`` maps port keys to "tcp" or "udp"; keys it does not name are tcp.
    Raises ValueError when the input does not have the documented shape.
    """
    if isinstance(records, (str, bytes)) or not isinstance(records, Sequence):
        raise ValueError("The port records must be a list of dictionaries, got %s." % type(records).__name__)
    if protocols is not None and not isinstance(protocols, Mapping):
        raise ValueError("The protocols must be a dictionary of port key to tcp or udp, got %s." % type(protocols).__name__)
    protocol_of = dict(protocols or {})
    for key, protocol in protocol_of.items():
        if protocol not in PROTOCOLS:
            raise ValueError("The protocol of port %s must be tcp or udp, got %r." % (key, protocol))

    problems: list[str] = []
    # (address, port, protocol) -> (record, key) of the first user.
    published: dict[tuple[str, int, str], tuple[Mapping[str, t.Any], str]] = {}
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ValueError("Port record %d is not a dictionary but %s." % (index + 1, type(record).__name__))
        ports = record.get("ports") or {}
        if not isinstance(ports, Mapping):
            raise ValueError("The ports of %s must be a dictionary, got %s." % (_describe(record), type(ports).__name__))
        start = record.get("unprivileged_port_start")
        start_number = DEFAULT_UNPRIVILEGED_PORT_START if is_empty(start) else _port_number(start)
        if start_number is None:
            raise ValueError(
                "The unprivileged_port_start of %s must be an integer, got %r." % (_describe(record), start)
            )
        who = _describe(record)
        address = _address_key(record)
        own: dict[tuple[int, str], str] = {}
        for key, value in ports.items():
            protocol = protocol_of.get(key, DEFAULT_PROTOCOL)
            number = _port_number(value)
            if number is None or not 1 <= number <= 65535:
                problems.append(
                    "%s: the %s port is %r; a port must be an integer from 1 to 65535. Fix: set a valid port."
                    % (who, key, value)
                )
                continue
            if number < start_number:
                problems.append(
                    "%s: the %s port %d/%s is below %s (%d), so the rootless engine cannot bind it. "
                    "Fix: choose a port from %d on."
                    % (who, key, number, protocol, SYSCTL_UNPRIVILEGED_PORT_START, start_number, start_number)
                )
            if (number, protocol) in own:
                problems.append(
                    "%s: the %s and %s ports are both %d/%s. Fix: give one of them another port."
                    % (who, own[(number, protocol)], key, number, protocol)
                )
                continue
            own[(number, protocol)] = key
            if address is None:
                continue
            first = published.get((address, number, protocol))
            if first is not None:
                problems.append(
                    "Port %d/%s on address %s is published twice: by %s as its %s port and by %s "
                    "as its %s port. Fix: give one of them another port."
                    % (number, protocol, address, _describe(first[0]), first[1], who, key)
                )
                continue
            published[(address, number, protocol)] = (record, key)
    return problems


def _address_key(record: Mapping[str, t.Any]) -> str | None:
    """The record's address in a comparable form, None without one."""
    address = record.get("address")
    if is_empty(address):
        return None
    text = str(address).strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text.lower().rstrip(".")
