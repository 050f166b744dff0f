# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The node container in rootless nerdctl: its command line and what to do about what runs.

Docker and Podman have Ansible modules that compare a running container with the wanted
one; nerdctl has none. The roles run ``nerdctl`` with ansible.builtin.command instead and
decide with these functions (through the filters in plugins/filter/nerdctl.py):

- ``run_argv(spec)``: the ``nerdctl run`` argument list for a container spec (the same
  fields the Docker and Podman task files give their modules, and nerdctl's annotations),
  with a label that carries a hash of the spec;
- ``container_action(inspect, spec, image_id)``: from ``nerdctl container inspect``'s JSON,
  "create", "recreate" (the spec or the image changed), "start" (it exists as wanted but
  does not run) or "none";
- ``network_action(inspect, subnet, gateway)``: "create", "none" or "differs" (a network of
  that name with another subnet: the node's address would move, so the role refuses).
"""

from __future__ import annotations

import hashlib
import json
import typing as t

from ansible_collections.u7s.cluster.plugins.module_utils import bypass4netns as _bypass4netns

SPEC_LABEL = "u7s.cluster/spec"
# nerdctl's inspect names the image a container runs by the reference it was given, not
# by ID; the ID it was created from is kept in this label instead.
IMAGE_LABEL = "u7s.cluster/image"
SPEC_KEYS = ("name", "image", "hostname", "privileged", "restart", "network", "ip", "publish", "volumes",
             "tmpfs", "cgroupns", "sysctls", "env", "annotations")


class SpecError(ValueError):
    """A container spec the functions cannot turn into a command line."""


def _normalize_id(image_id: str) -> str:
    image_id = image_id.strip()
    return image_id if image_id.startswith("sha256:") else "sha256:" + image_id


def normalize_spec(spec: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The spec with every field present, in the types run_argv writes."""
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise SpecError("unknown container spec fields: %s" % ", ".join(unknown))
    for key in ("name", "image"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise SpecError("the container spec needs a non-empty %s" % key)
    out = {
        "name": spec["name"],
        "image": spec["image"],
        "hostname": str(spec.get("hostname") or ""),
        "privileged": bool(spec.get("privileged", False)),
        "restart": str(spec.get("restart") or "no"),
        "network": str(spec.get("network") or ""),
        "ip": str(spec.get("ip") or ""),
        "publish": [str(p) for p in spec.get("publish") or []],
        "volumes": [str(v) for v in spec.get("volumes") or []],
        "tmpfs": [str(p) for p in spec.get("tmpfs") or []],
        "cgroupns": str(spec.get("cgroupns") or ""),
        "sysctls": {str(k): str(v) for k, v in sorted((spec.get("sysctls") or {}).items())},
        "env": {str(k): str(v) for k, v in sorted((spec.get("env") or {}).items())},
        # OCI annotations (nerdctl run --annotation): bypass4netns's, read by nerdctl's OCI hooks.
        "annotations": {str(k): str(v) for k, v in sorted((spec.get("annotations") or {}).items())},
    }
    if out["ip"] and not out["network"]:
        raise SpecError("a fixed ip needs a network")
    for key, value in out["env"].items():
        if "=" in key or not key:
            raise SpecError("environment variable name %r is not one" % key)
        if "\n" in value:
            raise SpecError("environment variable %s holds a newline" % key)
    for key in out["annotations"]:
        if "=" in key or not key:
            raise SpecError("annotation name %r is not one" % key)
    return out


def spec_hash(spec: t.Mapping[str, t.Any]) -> str:
    """A hash of the normalized spec (the image by name: its ID is compared on its own).

    A spec without annotations hashes as before they were a field, so nodes created then are not
    recreated for it.
    """
    normalized = normalize_spec(spec)
    if not normalized["annotations"]:
        del normalized["annotations"]
    blob = json.dumps(normalized, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def run_argv(spec: t.Mapping[str, t.Any], image_id: str = "", cli: str = "nerdctl") -> list[str]:
    """``nerdctl run -d`` for the spec, labelled with its hash and the image's ID (when given)."""
    s = normalize_spec(spec)
    argv = [cli, "run", "--detach", "--name", s["name"], "--label", "%s=%s" % (SPEC_LABEL, spec_hash(s))]
    if image_id:
        argv += ["--label", "%s=%s" % (IMAGE_LABEL, _normalize_id(image_id))]
    if s["hostname"]:
        argv += ["--hostname", s["hostname"]]
    if s["privileged"]:
        argv.append("--privileged")
    argv += ["--restart", s["restart"]]
    if s["network"]:
        argv += ["--network", s["network"]]
    if s["ip"]:
        argv += ["--ip", s["ip"]]
    if s["cgroupns"]:
        argv += ["--cgroupns", s["cgroupns"]]
    for spec_ in s["publish"]:
        argv += ["--publish", spec_]
    for volume in s["volumes"]:
        argv += ["--volume", volume]
    for path in s["tmpfs"]:
        argv += ["--tmpfs", path]
    for key, value in s["sysctls"].items():
        argv += ["--sysctl", "%s=%s" % (key, value)]
    for key, value in s["env"].items():
        argv += ["--env", "%s=%s" % (key, value)]
    for key, value in s["annotations"].items():
        argv += ["--annotation", "%s=%s" % (key, value)]
    argv.append(s["image"])
    return argv


def bypass4netns_annotations(ignore_subnets: t.Sequence[str]) -> dict[str, str]:
    """The annotations that make nerdctl run a container with bypass4netns, IGNORE_SUBNETS left alone."""
    return _bypass4netns.annotations(ignore_subnets)


def _first(inspect: t.Any) -> t.Optional[t.Mapping[str, t.Any]]:
    """The one object of an inspect answer: a JSON list, a string of one, or nothing."""
    if isinstance(inspect, str):
        inspect = inspect.strip()
        if not inspect:
            return None
        inspect = json.loads(inspect)
    if isinstance(inspect, list):
        return inspect[0] if inspect else None
    if isinstance(inspect, dict):
        return inspect
    if inspect is None:
        return None
    raise SpecError("an inspect answer is a JSON list, got %r" % type(inspect).__name__)


def container_action(inspect: t.Any, spec: t.Mapping[str, t.Any], image_id: str = "") -> str:
    """What makes the container the spec's: create, recreate, start or none.

    ``inspect`` is ``nerdctl container inspect NAME`` (Docker-compatible JSON; empty when
    there is none); ``image_id`` the ID of the image the spec names now (empty: not
    compared), against the one run_argv labelled the container with.
    """
    current = _first(inspect)
    if current is None:
        return "create"
    labels = (current.get("Config") or {}).get("Labels") or {}
    if labels.get(SPEC_LABEL) != spec_hash(spec):
        return "recreate"
    if image_id and labels.get(IMAGE_LABEL) != _normalize_id(image_id):
        return "recreate"
    if not (current.get("State") or {}).get("Running"):
        return "start"
    return "none"


def network_action(inspect: t.Any, subnet: str, gateway: str = "") -> str:
    """create, none, or differs (another subnet or gateway) for ``nerdctl network inspect NAME``."""
    current = _first(inspect)
    if current is None:
        return "create"
    configs = ((current.get("IPAM") or {}).get("Config")) or []
    for config in configs:
        if config.get("Subnet") == subnet and (not gateway or config.get("Gateway") in (None, "", gateway)):
            return "none"
    return "differs"


def image_ids(inspect: t.Any) -> list[str]:
    """The sha256: IDs of ``nerdctl image inspect``'s answer (empty when it found none)."""
    if isinstance(inspect, str):
        inspect = inspect.strip()
        inspect = json.loads(inspect) if inspect else []
    return [_normalize_id(str(image["Id"])) for image in inspect or [] if image.get("Id")]


def image_names(listing: t.Any) -> list[str]:
    """The REPOSITORY:TAG names in ``nerdctl image ls --format json`` (one JSON object a line); untagged skipped."""
    if isinstance(listing, str):
        listing = [json.loads(line) for line in listing.splitlines() if line.strip()]
    names = []
    for image in listing or []:
        repository, tag = image.get("Repository") or "", image.get("Tag") or ""
        if repository and repository != "<none>" and tag and tag != "<none>":
            names.append("%s:%s" % (repository, tag))
    return names
