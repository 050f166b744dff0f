# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""bypass4netns for the node container: whether a host runs it, and what it must leave alone.

bypass4netns (github.com/rootless-containers/bypass4netns) traps socket system calls of a
container's processes with seccomp user notification and, for a connect(2) to an address
outside its ignore list, hands the process a socket made in the host's network namespace
(SECCOMP_IOCTL_NOTIF_ADDFD, Linux 5.9), so that the connection skips slirp4netns. nerdctl starts
it for a container created with its annotations (nerdctl v2.2.0, pkg/annotations/annotations.go):

- ``nerdctl/bypass4netns``: "true" turns it on;
- ``nerdctl/bypass4netns-ignore-bind``: "true" leaves bind(2) alone, so the node's ports stay
  published by RootlessKit's port driver (bypass4netns would otherwise bind them in the host's
  namespace, where nothing in the node's own namespace, kube-proxy's NodePort rules among them,
  can reach them);
- ``nerdctl/bypass4netns-ignore-subnets``: a JSON list of CIDRs appended to the ignore list
  (nerdctl itself adds 127.0.0.0/8, RootlessKit's /24 and "auto": the interfaces of the node's
  namespace as bypass4netns reads them when the container starts).

Pure functions; the settings check (module_utils/cluster_model.py) decides and plans, the node
role's nerdctl spec carries :func:`annotations`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import typing as t

ANNOTATION = "nerdctl/bypass4netns"
ANNOTATION_IGNORE_BIND = ANNOTATION + "-ignore-bind"
ANNOTATION_IGNORE_SUBNETS = ANNOTATION + "-ignore-subnets"
# SECCOMP_IOCTL_NOTIF_ADDFD arrived in Linux 5.9.
MIN_KERNEL = (5, 9)
# The engine whose containers bypass4netns accelerates here (nerdctl starts it from the annotations).
ENGINE = "nerdctl"
# The setting's values (u7s_bypass4netns), as the settings check hands them over.
CHOICES = ("auto", "true", "false")
# Always left to the node's namespace: loopback, and the unspecified addresses, which connect(2) takes
# as "this host" (a node's own 127.0.0.1, ::1 or 0.0.0.0 must not become the host's: CoreDNS's health
# plugin checks itself at 0.0.0.0:8080, and on the test bed bypass4netns sent that to the host's port).
LOCAL = ("0.0.0.0/32", "127.0.0.0/8", "::/128", "::1/128")

_KERNEL_RELEASE = re.compile(r"(\d+)\.(\d+)")


def kernel_version(release: t.Any) -> tuple[int, int] | None:
    """(major, minor) of a kernel release such as 6.12.48+deb13-amd64; None when unknown or unreadable."""
    if not isinstance(release, str):
        return None
    match = _KERNEL_RELEASE.match(release.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


class Decision(t.NamedTuple):
    """Whether a host's node runs with bypass4netns, or why the setting cannot be had."""

    enabled: bool
    # None, or the problem with u7s_bypass4netns: true on the host, naming the host and a fix.
    refusal: str | None = None


def decide(host: str, setting: str, engine: str, kernel_release: t.Any) -> Decision:
    """u7s_bypass4netns ("auto", "true" or "false") for HOST with ENGINE and KERNEL_RELEASE.

    auto: on with nerdctl on a kernel known to be 5.9 or later, else off (an unknown kernel - no
    facts - is off). true: refused with another engine or a kernel known to be older; an unknown
    kernel is taken on trust (a host outside the run, whose node is not touched).
    """
    if setting not in CHOICES:
        raise ValueError("u7s_bypass4netns must be one of %s, got %r" % (", ".join(CHOICES), setting))
    if setting == "false":
        return Decision(False)
    version = kernel_version(kernel_release)
    supported = version is not None and version >= MIN_KERNEL
    if setting == "auto":
        return Decision(engine == ENGINE and supported)
    if engine != ENGINE:
        return Decision(False, (
            "Host %s: u7s_bypass4netns is true, but its u7s_engine is %s, and bypass4netns accelerates only "
            "nerdctl's containers (nerdctl starts it from the node container's annotations). Fix: set "
            "u7s_bypass4netns to auto (on only with nerdctl on Linux %d.%d or later) or false for host %s, or its "
            "u7s_engine to nerdctl." % (host, engine, *MIN_KERNEL, host)))
    if version is not None and not supported:
        return Decision(False, (
            "Host %s: u7s_bypass4netns is true, but the host runs Linux %s, and bypass4netns needs %d.%d or later "
            "(SECCOMP_IOCTL_NOTIF_ADDFD). Fix: boot host %s with a newer kernel, or set u7s_bypass4netns to auto "
            "(off on this kernel) or false for it." % (host, kernel_release, *MIN_KERNEL, host)))
    return Decision(True)


def ignore_subnets(pod_cidr: str, service_cidr: str, node_subnets: t.Iterable[str]) -> list[str]:
    """The networks whose connections stay in the node's namespace, as CIDR strings.

    Loopback and the unspecified addresses, the pod network (pods of every node: flannel's VXLAN carries them, in the node's
    namespace), the service network (only kube-proxy's rules in the node's namespace resolve it) and
    the node networks (each node container's own network behind its engine). Sorted and merged, so
    that the same cluster always gives the same list (it is part of the container's spec).
    """
    networks = [ipaddress.ip_network(text, strict=False) for text in (*LOCAL, pod_cidr, service_cidr, *node_subnets)]
    merged: list[t.Any] = []
    for version in (4, 6):
        merged += ipaddress.collapse_addresses(network for network in networks if network.version == version)
    return [str(network) for network in merged]


def annotations(subnets: t.Sequence[str]) -> dict[str, str]:
    """The node container's annotations that turn bypass4netns on with SUBNETS ignored.

    The subnets as nerdctl reads them: a JSON list of strings (compact, so the text is stable).
    """
    if isinstance(subnets, (str, bytes)) or not all(isinstance(subnet, str) and subnet for subnet in subnets):
        raise ValueError("the ignored subnets are a list of CIDRs, got %r" % (subnets,))
    return {
        ANNOTATION: "true",
        ANNOTATION_IGNORE_BIND: "true",
        ANNOTATION_IGNORE_SUBNETS: json.dumps(list(subnets), separators=(",", ":")),
    }
