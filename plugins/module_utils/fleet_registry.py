# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The fleet-local registry (settings u7s_registry_*): its check, its plan, and image names under it.

Pure logic on plain data, no I/O. The cluster model (:mod:`cluster_model`) calls
:func:`registry_plan` once per run with the registry group's host(s), as the
``u7s.cluster.cluster_plan`` action gathers them::

    {"name": "reg1", "host_ip": "", "ansible_host": "192.0.2.5", "default_ipv4": None}

Image names under the registry (:func:`fleet_path`) keep the name's registry host as the
first path component, so that every upstream registry has a namespace of its own and a
containerd mirror entry (``override_path``) can serve it; ``localhost/`` names (the
collection's own images) drop it::

    localhost/u7s/node:v1.36.4               -> <registry>/u7s/node:v1.36.4
    registry.k8s.io/pause:3.10               -> <registry>/registry.k8s.io/pause:3.10
    ghcr.io/flannel-io/flannel:v0.27.4       -> <registry>/ghcr.io/flannel-io/flannel:v0.27.4
    busybox:1.37 (Docker Hub's short form)   -> <registry>/docker.io/library/busybox:1.37
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import typing as t
from collections.abc import Mapping, Sequence

from ansible_collections.u7s.cluster.plugins.module_utils.registries import host_problem

# The settings of the fleet registry (declared in the settings role).
SETTINGS = (
    "u7s_registry_group",
    "u7s_registry_port",
    "u7s_registry_address",
    "u7s_registry_user",
    "u7s_registry_ca_file",
    "u7s_registry_ca_key_file",
    "u7s_registry_images",
    "u7s_registry_offline_images_dir",
)
# The registry runs unprivileged: it cannot bind a port below this.
UNPRIVILEGED_PORT_START = 1024
# The collection's own images are named localhost/...: that name has no registry to keep.
LOCAL_HOST = "localhost"
DOCKER_HUB = "docker.io"
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# The node image under the registry: localhost/u7s/node:<version> keeps its path.
NODE_IMAGE_PATH = "u7s/node"
# purposes (of cluster_model.PURPOSES) whose hosts need the registry's CA on the controller now.
PURPOSES_NEEDING_CA = ("bring-up", "upgrade")


class ImageNameError(ValueError):
    """An image reference the registry cannot take."""


def split_reference(ref: str) -> tuple[str, str, str]:
    """(registry host, path, tag or @digest) of an image reference, Docker's rules for the host.

    The first component is a registry host when it has a '.' or ':' or is localhost; otherwise the
    name is Docker Hub's (a single component is under library/). No tag means latest.
    """
    if not isinstance(ref, str) or not ref or ref != ref.strip() or " " in ref:
        raise ImageNameError("%r is not an image reference" % (ref,))
    name, at, digest = ref.partition("@")
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == LOCAL_HOST):
        host, path = first, rest
    else:
        host, path = DOCKER_HUB, name if slash else "library/" + name
    if not path or path != path.lower() or "//" in path or path.endswith("/"):
        raise ImageNameError("%r has no valid repository path (lower case, components separated by '/')" % ref)
    suffix = "@" + digest if at else ":" + (tag or "latest")
    if at and tag:
        suffix = ":" + tag + suffix
    return host, path, suffix


def fleet_path(ref: str) -> str:
    """The repository path and tag an image has under the fleet registry (see the module's mapping)."""
    host, path, suffix = split_reference(ref)
    return (path if host == LOCAL_HOST else host + "/" + path) + suffix


def fleet_ref(ref: str, endpoint: str) -> str:
    """REF's name in the fleet registry at ENDPOINT (host:port)."""
    return endpoint + "/" + fleet_path(ref)


def offline_images(manifest: t.Any, directory: str) -> list[dict[str, str]]:
    """The images of artifacts/images.sh's manifest.json: {ref, file (path), id}, the node base left out.

    ``role`` "node" is the base the node image is built from; the node image itself is loaded
    from node_image's archive.
    """
    if not isinstance(manifest, Mapping) or not isinstance(manifest.get("images"), list):
        raise ValueError("%s/manifest.json has no list of images; is it the directory artifacts/images.sh "
                         "build printed?" % directory)
    found = []
    for entry in manifest["images"]:
        if not isinstance(entry, Mapping) or not all(isinstance(entry.get(key), str) for key in ("ref", "file", "id")):
            raise ValueError("%s/manifest.json has an image entry without ref, file and id: %r" % (directory, entry))
        if entry.get("role") == "node":
            continue
        found.append({"ref": entry["ref"], "file": posixpath.join(directory, entry["file"]), "id": entry["id"]})
    return found


def archive_images(results: t.Any) -> list[dict[str, str]]:
    """{ref, file, id} for every name in the archives image_archive_info read (its loop's results)."""
    found = []
    for result in results or []:
        for image in result.get("images") or []:
            for tag in image.get("repo_tags") or []:
                found.append({"ref": tag, "file": result["item"], "id": image["id"]})
    return found


def load_plan(images: Sequence[Mapping[str, t.Any]], pushed: Mapping[str, t.Any]) -> list[dict[str, t.Any]]:
    """Which images to upload and push: those whose fleet path does not hold their image ID yet.

    IMAGES: {ref, file, id}; PUSHED: fleet path -> the config digest the registry holds (None: none).
    Each file is uploaded once even if several refs come from it. Returns {file, refs: [{ref, path}]}.
    """
    by_file: dict[str, list[dict[str, str]]] = {}
    for image in images:
        path = fleet_path(image["ref"])
        if pushed.get(path) == image["id"]:
            continue
        refs = by_file.setdefault(image["file"], [])
        if all(item["path"] != path for item in refs):
            refs.append({"ref": image["ref"], "path": path})
    return [{"file": file, "refs": refs} for file, refs in by_file.items()]


def manifest_config_digest(manifest: t.Any) -> str | None:
    """The config digest (the image ID) of a registry manifest (docker v2 schema 2 or OCI); None otherwise."""
    if isinstance(manifest, Mapping) and isinstance(manifest.get("config"), Mapping):
        digest = manifest["config"].get("digest")
        return digest if isinstance(digest, str) else None
    return None


def _is_ipv4(value: t.Any) -> bool:
    try:
        return ipaddress.ip_address(str(value)).version == 4
    except ValueError:
        return False


def registry_plan(
    cluster: Mapping[str, t.Any],
    members: Sequence[Mapping[str, t.Any]] | None,
    cluster_users: Mapping[str, str],
    cluster_addresses: Mapping[str, str],
    missing_files: t.Collection[str],
    generated_ca: tuple[str, str],
    purpose: str,
) -> tuple[dict[str, t.Any] | None, list[str]]:
    """The fleet registry's plan (None: the inventory has none) and its problems.

    CLUSTER: the cluster-wide settings (checked types); MEMBERS: the registry group's hosts (None:
    no such group); CLUSTER_USERS / CLUSTER_ADDRESSES: the cluster hosts' u7s_user and address, by
    name; GENERATED_CA: the controller paths of the CA and key the collection generates.
    """
    group = cluster["u7s_registry_group"]
    problems: list[str] = []
    if not members:
        return None, problems
    if len(members) > 1:
        names = ", ".join(member["name"] for member in members)
        problems.append("The group %s (u7s_registry_group) holds %d hosts (%s), but the fleet registry runs on one. "
                        "Fix: keep one host in %s." % (group, len(members), names, group))
        return None, problems
    host = members[0]
    name = host["name"]
    port = cluster["u7s_registry_port"]
    if not UNPRIVILEGED_PORT_START <= port <= 65535:
        problems.append("u7s_registry_port is %d; the registry runs as an unprivileged account and needs a port "
                        "from %d to 65535. Fix: set u7s_registry_port to a free port such as 5000."
                        % (port, UNPRIVILEGED_PORT_START))
    user = cluster["u7s_registry_user"]
    if user == "root" or not USER_NAME.fullmatch(user):
        problems.append("u7s_registry_user %r is not an unprivileged account name. Fix: set u7s_registry_user to a "
                        "name such as u7s-registry." % user)
    elif user in set(cluster_users.values()):
        problems.append("u7s_registry_user %s is also a cluster user (u7s_user); the registry gets an account of "
                        "its own. Fix: set u7s_registry_user to another name, such as u7s-registry." % user)

    # The address the hosts reach it by: never from facts alone when another source exists, so that
    # every playbook (with or without the registry host in its play) names the same registry.
    given = str(cluster["u7s_registry_address"] or "").strip()
    address = (given or cluster_addresses.get(name) or str(host.get("host_ip") or "").strip()
               or (host.get("ansible_host") if _is_ipv4(host.get("ansible_host")) else "")
               or host.get("default_ipv4") or "")
    if not address:
        problems.append("Host %s (group %s): the fleet registry's address is unknown. Fix: set u7s_registry_address "
                        "to the name or IPv4 address the hosts reach it by (or u7s_host_ip on host %s)."
                        % (name, group, name))
    elif host_problem(address):
        problems.append("u7s_registry_address %r %s. Fix: set it to the name or IPv4 address the hosts reach the "
                        "registry by." % (address, host_problem(address)))

    ca_file, ca_key = cluster["u7s_registry_ca_file"], cluster["u7s_registry_ca_key_file"]
    if bool(ca_file) != bool(ca_key):
        given_name, lacking = (("u7s_registry_ca_file", "u7s_registry_ca_key_file") if ca_file
                               else ("u7s_registry_ca_key_file", "u7s_registry_ca_file"))
        problems.append("%s is set but %s is not; the collection signs the registry's certificate with the CA's key. "
                        "Fix: set both (PEM files on the controller), or neither (a CA is generated)."
                        % (given_name, lacking))
    for setting in ("u7s_registry_ca_file", "u7s_registry_ca_key_file", "u7s_registry_offline_images_dir"):
        value = cluster[setting]
        if value and not posixpath.isabs(value):
            problems.append("%s is %r, a relative path. Fix: give its absolute path on the controller, such as "
                            "\"{{ inventory_dir }}/files/%s\"." % (setting, value, posixpath.basename(value)))
        elif value and setting != "u7s_registry_offline_images_dir" and value in missing_files:
            problems.append("%s names %s, which is not a file on the controller. Fix: put the PEM file there, or "
                            "correct the path." % (setting, value))
    offline = cluster["u7s_registry_offline_images_dir"]
    if offline and posixpath.isabs(offline) and posixpath.join(offline, "manifest.json") in missing_files:
        problems.append("u7s_registry_offline_images_dir %s holds no manifest.json. Fix: set it to the directory "
                        "`artifacts/images.sh path` prints (after `artifacts/images.sh build`), or leave it empty."
                        % offline)
    for index, path in enumerate(cluster["u7s_registry_images"]):
        label = "u7s_registry_images[%d]" % index
        if not isinstance(path, str) or not posixpath.isabs(path):
            problems.append("%s is %r, not an absolute path. Fix: list `docker save` archives on the controller by "
                            "their absolute paths." % (label, path))
        elif path in missing_files:
            problems.append("%s names %s, which is not a file on the controller. Fix: save the image there "
                            "(docker save -o %s <image>), or remove the entry." % (label, path, path))
    endpoint = "%s:%d" % (address, port) if address else None
    if endpoint and endpoint in (cluster.get("u7s_registries") or {}):
        problems.append("u7s_registries has an entry %s, the fleet registry, which the collection adds itself (with "
                        "its CA). Fix: remove u7s_registries[%s]." % (endpoint, endpoint))

    generate = not ca_file
    ca, key = (generated_ca if generate else (ca_file, ca_key))
    if generate and purpose in PURPOSES_NEEDING_CA and ca in missing_files:
        problems.append("The fleet registry's CA %s is not on the controller yet (u7s_registry_group %s holds %s), and "
                        "the hosts need it to trust the registry. Fix: run playbooks/registry.yml first; it generates "
                        "the CA and starts the registry." % (ca, group, name))
    if problems:
        return None, problems
    names = [address, LOCAL_HOST, "127.0.0.1"]
    derived = cluster_addresses.get(name) or host.get("default_ipv4")
    if derived and derived not in names:
        names.append(derived)
    return {
        "host": name,
        "address": address,
        "port": port,
        "endpoint": endpoint,
        "user": user,
        "ca_file": ca,
        "ca_key_file": key,
        "generate_ca": generate,
        "in_cluster": name in cluster_addresses or name in cluster_users,
        "subject_alt_names": ["IP:" + item if _is_ipv4(item) else "DNS:" + item for item in names],
        "node_image": endpoint + "/" + NODE_IMAGE_PATH + ":" + cluster["u7s_kubernetes_version"],
    }, problems
