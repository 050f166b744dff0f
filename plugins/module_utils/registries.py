# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Registry mirrors and private registries of the nodes' containerd (the setting u7s_registries).

Pure logic on plain data, no I/O: the check of the setting (its problems go into the cluster
plan's, each naming u7s_registries and a fix) and the files the registries role writes, one
directory per registry with a containerd ``hosts.toml`` and the CA, client certificate and key
files it names. containerd (1.5 and later, config_path set by the node image's entrypoint) reads
``<config_path>/<registry host[:port]>/hosts.toml`` at every pull, so a change needs no restart.

The value, a mapping of registry host (as in image names; ``_default``: every registry) to::

    {
        "mirrors": [                       # tried in order before the registry itself
            "http://10.0.0.5:5000",        # a URL alone
            {"url": "https://mirror.example:5000", "ca_file": "/controller/ca.pem",
             "client_cert_file": "...", "client_key_file": "...", "skip_verify": False,
             "username": "pull", "password": "...", "override_path": False},
        ],
        "fallback": True,                  # also the registry itself (containerd's server)
        # The registry itself (not for _default): its CA, client certificate, credentials.
        "ca_file": "...", "client_cert_file": "...", "client_key_file": "...",
        "skip_verify": False, "username": "...", "password": "...",
    }

containerd always adds the registry itself after the hosts of a hosts.toml when ``server`` is
not set (remotes/docker/config/hosts.go: the root entry without a host becomes the registry), so
``fallback: false`` makes the last mirror the ``server`` instead of leaving ``server`` out.
Credentials are a static ``Authorization: Basic`` header: the registry (or mirror) gets it with
every request; containerd 2.1 and later also sends it to a token service that a Bearer challenge
names, containerd 1.7 and 2.0 do not (there only registries that take Basic authentication on
their API, such as a registry:2 with htpasswd, can use them).
"""

from __future__ import annotations

import base64
import difflib
import ipaddress
import json
import posixpath
import re
import typing as t
from collections.abc import Mapping
from urllib.parse import urlsplit

SETTING = "u7s_registries"
# The registry host namespace containerd uses when no other matches.
DEFAULT_NAMESPACE = "_default"
# docker.io's API is served from another host (containerd's own default for docker.io).
SERVERS = {"docker.io": "https://registry-1.docker.io"}

TLS_KEYS = ("ca_file", "client_cert_file", "client_key_file", "skip_verify")
CREDENTIAL_KEYS = ("username", "password")
FILE_KEYS = ("ca_file", "client_cert_file", "client_key_file")
BOOL_KEYS = ("skip_verify", "override_path")
REGISTRY_KEYS = ("mirrors", "fallback") + TLS_KEYS + CREDENTIAL_KEYS
MIRROR_KEYS = ("url",) + TLS_KEYS + CREDENTIAL_KEYS + ("override_path",)
# A mirror is trusted to resolve tags to digests: it is the site's own (containerd's hosts.md:
# "Private Mirror: pull, resolve").
MIRROR_CAPABILITIES = ("pull", "resolve")

DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*")
# Written as the first line of every hosts.toml.
HEADER = "# Written by u7s.cluster (role registries) from u7s_registries[%s]; edits are overwritten.\n"

EXAMPLE = ("{docker.io: {mirrors: [{url: https://registry.example.org:5000, ca_file: /path/on/controller/ca.pem}]}}")


class RegistriesError(ValueError):
    """u7s_registries has problems (the message lists them)."""


def _label(key: t.Any, *path: t.Any) -> str:
    text = "%s[%s]" % (SETTING, json.dumps(str(key)))
    for part in path:
        text += "[%d]" % part if isinstance(part, int) else ".%s" % part
    return text


def _is_text(value: t.Any) -> bool:
    return isinstance(value, str)


def host_problem(host: str) -> str | None:
    """Why HOST (without port) is neither a lower-case DNS name nor an IPv4 address, or None."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return None if address.version == 4 else "is IPv6; the cluster is IPv4 only"
    if host != host.lower():
        return "has upper-case letters; registry hosts are written in lower case"
    if len(host) > 253 or not DNS_NAME.fullmatch(host):
        return "is not a DNS name (labels of letters, digits and '-', separated by dots) or an IPv4 address"
    return None


def _port_problem(port: str) -> str | None:
    if not (port.isascii() and port.isdecimal()) or not 1 <= int(port) <= 65535:
        return "has port %r; a port is an integer from 1 to 65535" % port
    return None


def _key_problem(key: t.Any) -> str | None:
    """Why KEY is not a registry host[:port] (or _default), or None."""
    if not _is_text(key) or not key:
        return "is not a registry host"
    if key == DEFAULT_NAMESPACE:
        return None
    if "://" in key or "/" in key:
        return "is not a registry host[:port] (no scheme, no path: as in image names, e.g. registry.example.org:5000)"
    if key.count(":") > 1 or key.startswith("["):
        return "names an IPv6 address; the cluster is IPv4 only"
    host, sep, port = key.rpartition(":")
    if not sep:
        host, port = key, ""
    elif not host:
        return "has no host"
    if sep and _port_problem(port):
        return _port_problem(port)
    return host_problem(host)


def _url_problem(url: t.Any) -> str | None:
    """Why URL is not an http(s) URL of a registry host, or None."""
    if not _is_text(url) or not url:
        return "must be a URL such as https://registry.example.org:5000, got %r" % (url,)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "is %r; it must start with https:// (or http:// for a registry without TLS)" % url
    if not parts.netloc:
        return "is %r, which names no host" % url
    if "@" in parts.netloc:
        return "carries credentials in the URL; give them as username and password instead"
    if parts.query or parts.fragment:
        return "is %r; a registry URL has no query or fragment" % url
    host, sep, port = parts.netloc.rpartition(":")
    if not sep or "]" in port:
        host, port = parts.netloc, ""
    if host.startswith("["):
        return "is %r, which names an IPv6 address; the cluster is IPv4 only" % url
    if sep and port and _port_problem(port):
        return _port_problem(port)
    problem = host_problem(host)
    return "is %r, whose host %s" % (url, problem) if problem else None


def _unknown_keys(entry: Mapping[str, t.Any], allowed: t.Sequence[str], label: str, what: str) -> list[str]:
    problems = []
    for name in entry:
        if name in allowed:
            continue
        close = difflib.get_close_matches(str(name), allowed, n=1)
        hint = " (did you mean %s?)" % close[0] if close else ""
        problems.append("%s has the key %r, which is no setting of %s%s. Fix: use only %s."
                        % (label, name, what, hint, ", ".join(allowed)))
    return problems


def _options_problems(entry: Mapping[str, t.Any], label: str, scheme: str,
                      missing_files: t.Collection[str]) -> list[str]:
    """Problems of the TLS and credential options of one endpoint (a mirror or the registry itself)."""
    problems = []
    for name in BOOL_KEYS:
        if name in entry and not isinstance(entry[name], bool):
            problems.append("%s.%s is %r, not a boolean. Fix: set it to true or false (unquoted)."
                            % (label, name, entry[name]))
    for name in FILE_KEYS:
        if name not in entry:
            continue
        path = entry[name]
        if not _is_text(path) or not path:
            problems.append("%s.%s is %r, not a file name. Fix: set it to the absolute path of a PEM file on the "
                            "controller." % (label, name, path))
        elif not posixpath.isabs(path):
            problems.append("%s.%s is %r, a relative path. Fix: give the file's absolute path on the controller, "
                            "such as \"{{ inventory_dir }}/files/%s\"." % (label, name, path, posixpath.basename(path)))
        elif path in missing_files:
            problems.append("%s.%s names %s, which is not a file on the controller. Fix: put the PEM file there, or "
                            "correct the path." % (label, name, path))
    if ("client_cert_file" in entry) != ("client_key_file" in entry):
        given, lacking = (("client_cert_file", "client_key_file") if "client_cert_file" in entry
                          else ("client_key_file", "client_cert_file"))
        problems.append("%s has %s but no %s; a client certificate needs its key. Fix: set both, or neither."
                        % (label, given, lacking))
    if scheme == "http":
        tls = [name for name in TLS_KEYS if name in entry and entry[name] is not False]
        if tls:
            problems.append("%s sets %s, but its URL is http://, which has no TLS to configure (containerd would try "
                            "HTTPS first). Fix: remove %s, or use the mirror's https:// URL."
                            % (label, ", ".join(tls), ", ".join(tls)))
    if ("username" in entry) != ("password" in entry):
        given, lacking = ("username", "password") if "username" in entry else ("password", "username")
        problems.append("%s has %s but no %s. Fix: set both (the password from Ansible Vault), or neither."
                        % (label, given, lacking))
    username = entry.get("username")
    if "username" in entry and (not _is_text(username) or not username or ":" in username):
        problems.append("%s.username is %r; HTTP Basic authentication needs a non-empty name without ':'. Fix: set "
                        "username to the account's name, quoted." % (label, username))
    if "password" in entry and (not _is_text(entry["password"]) or not entry["password"]):
        # The value itself is never shown.
        problems.append("%s.password is not a non-empty string. Fix: set it to the account's password as a quoted "
                        "string, e.g. \"{{ vault_registry_password }}\" from Ansible Vault." % label)
    return problems


def _mirror(entry: t.Any) -> dict[str, t.Any] | None:
    """A mirror as a mapping with url (None when it is neither a URL nor a mapping)."""
    if _is_text(entry):
        return {"url": entry}
    if isinstance(entry, Mapping):
        return dict(entry)
    return None


def registry_problems(value: t.Any, missing_files: t.Collection[str] = ()) -> list[str]:
    """Every problem of u7s_registries, each naming the setting and a fix.

    ``missing_files`` are the controller paths (of controller_files) that are no files there.
    """
    if not isinstance(value, Mapping):
        return ["%s is %r, not a mapping. Fix: set it to a mapping of registry host to its mirrors, such as %s."
                % (SETTING, value, EXAMPLE)]
    problems: list[str] = []
    for key, entry in value.items():
        label = _label(key)
        found = _key_problem(key)
        if found:
            problems.append("%s: the key %r %s. Fix: use the registry's host[:port] as in image names "
                            "(docker.io, registry.example.org:5000), or %s for every registry."
                            % (SETTING, key, found, DEFAULT_NAMESPACE))
            continue
        if not isinstance(entry, Mapping):
            problems.append("%s is %r, not a mapping. Fix: give it mirrors, or the registry's own ca_file, client "
                            "certificate or credentials, e.g. %s." % (label, entry, EXAMPLE))
            continue
        problems += _unknown_keys(entry, REGISTRY_KEYS, label, "a registry")
        fallback = entry.get("fallback", True)
        if not isinstance(fallback, bool):
            problems.append("%s.fallback is %r, not a boolean. Fix: set it to true or false (unquoted)."
                            % (label, fallback))
        own = [name for name in TLS_KEYS + CREDENTIAL_KEYS if name in entry]
        if key == DEFAULT_NAMESPACE and own:
            problems.append("%s sets %s, which would go to every registry. Fix: set them on the registries that need "
                            "them, or on the mirrors." % (label, ", ".join(own)))
        else:
            problems += _options_problems(entry, label, "https", missing_files)
        mirrors = entry.get("mirrors", [])
        if mirrors is None:
            mirrors = []
        if not isinstance(mirrors, list):
            problems.append("%s.mirrors is %r, not a list. Fix: list the mirrors' URLs (or {url: ...} entries) in "
                            "the order they are tried." % (label, mirrors))
            continue
        urls: dict[str, int] = {}
        for index, raw in enumerate(mirrors):
            mirror_label = _label(key, "mirrors", index)
            mirror = _mirror(raw)
            if mirror is None:
                problems.append("%s is %r, neither a URL nor a mapping with url. Fix: write the mirror's URL, or "
                                "{url: https://..., ...}." % (mirror_label, raw))
                continue
            problems += _unknown_keys(mirror, MIRROR_KEYS, mirror_label, "a mirror")
            found = _url_problem(mirror.get("url"))
            if found:
                problems.append("%s.url %s. Fix: set url to the mirror's http(s)://host[:port][/path]."
                                % (mirror_label, found))
                continue
            url = mirror["url"].rstrip("/")
            if url in urls:
                problems.append("%s repeats the URL %s of mirror %d. Fix: list each mirror once."
                                % (mirror_label, url, urls[url]))
            urls.setdefault(url, index)
            problems += _options_problems(mirror, mirror_label, urlsplit(url).scheme, missing_files)
        if not mirrors and not own:
            problems.append("%s has neither mirrors nor the registry's own ca_file, client certificate or credentials, "
                            "so there is nothing to configure. Fix: add mirrors or those settings, or remove the entry."
                            % label)
        elif fallback is False and not mirrors:
            problems.append("%s.fallback is false but there are no mirrors, so no image of it could be pulled. Fix: "
                            "add mirrors, or remove fallback." % label)
        elif fallback is False and own and key != DEFAULT_NAMESPACE:
            problems.append("%s.fallback is false, so the registry itself is never contacted, but it sets %s for it. "
                            "Fix: move them to the mirrors, or remove fallback." % (label, ", ".join(own)))
    return problems


def controller_files(value: t.Any) -> list[str]:
    """The controller paths u7s_registries names (ca_file, client_cert_file, client_key_file), each once.

    Tolerates any shape (for the existence check before registry_problems).
    """
    if not isinstance(value, Mapping):
        return []
    endpoints: list[t.Any] = []
    for entry in value.values():
        if not isinstance(entry, Mapping):
            continue
        endpoints.append(entry)
        mirrors = entry.get("mirrors")
        if isinstance(mirrors, list):
            endpoints += [mirror for mirror in mirrors if isinstance(mirror, Mapping)]
    found: dict[str, None] = {}
    for endpoint in endpoints:
        for name in FILE_KEYS:
            path = endpoint.get(name)
            if _is_text(path) and posixpath.isabs(path):
                found[path] = None
    return list(found)


def _toml_string(text: str) -> str:
    """A TOML basic string (json.dumps escapes what TOML needs escaped)."""
    return json.dumps(text, ensure_ascii=False)


def _basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(("%s:%s" % (username, password)).encode("utf-8")).decode("ascii")


def _endpoint(options: Mapping[str, t.Any], prefix: str, node_dir: str, files: list[dict[str, t.Any]],
              capabilities: bool) -> tuple[list[str], list[str]]:
    """The TOML lines of one endpoint's options and of its header table's entries; adds its files."""
    lines = []
    if capabilities:
        lines.append("capabilities = [%s]" % ", ".join(_toml_string(item) for item in MIRROR_CAPABILITIES))
    if "ca_file" in options:
        name = prefix + "-ca.pem"
        files.append({"name": name, "src": options["ca_file"], "secret": False})
        lines.append("ca = %s" % _toml_string(posixpath.join(node_dir, name)))
    if "client_cert_file" in options:
        cert, key = prefix + "-client.pem", prefix + "-client-key.pem"
        files.append({"name": cert, "src": options["client_cert_file"], "secret": False})
        files.append({"name": key, "src": options["client_key_file"], "secret": True})
        lines.append("client = [[%s, %s]]" % (_toml_string(posixpath.join(node_dir, cert)),
                                              _toml_string(posixpath.join(node_dir, key))))
    if options.get("skip_verify") is True:
        lines.append("skip_verify = true")
    if options.get("override_path") is True:
        lines.append("override_path = true")
    header = []
    if "username" in options:
        value = _basic_authorization(options["username"], options["password"])
        header.append("Authorization = [%s]" % _toml_string(value))
    return lines, header


def hosts_toml(key: str, entry: Mapping[str, t.Any], node_dir: str) -> tuple[str, list[dict[str, t.Any]], bool]:
    """The hosts.toml of registry KEY (a checked entry), the files it names ({name, src, secret}) and
    whether it holds credentials.

    NODE_DIR is the registry's directory as the node sees it (paths in hosts.toml are the node's).
    """
    files: list[dict[str, t.Any]] = []
    mirrors = [_mirror(raw) or {} for raw in entry.get("mirrors") or []]
    fallback = entry.get("fallback", True) is not False
    tables = []
    # Every endpoint is a [host] table: containerd 1.7 (Debian's, in the node-base image) refuses a
    # hosts.toml without one ("invalid `host` tree") and then pulls as if it did not exist.
    hosts = [(mirror["url"].rstrip("/"), mirror, "mirror%d" % number, True) for number, mirror in enumerate(mirrors, 1)]
    # The root entry (server): the registry itself, tried last; or (fallback false) the last mirror in
    # its place, since containerd adds the registry itself whenever server is missing.
    if fallback:
        root_url = SERVERS.get(key, "https://" + key) if key != DEFAULT_NAMESPACE else None
        root_lines, root_header = ([], []) if key == DEFAULT_NAMESPACE else _endpoint(
            entry, "registry", node_dir, [], capabilities=False)
        if not mirrors and root_url is not None:
            # A private registry without mirrors: the registry itself is the one table.
            hosts.append((root_url, entry, "registry", False))
        elif root_lines or root_header:
            # Its files, which the root's options name (the tables' are added below).
            _endpoint(entry, "registry", node_dir, files, capabilities=False)
    else:
        root_url = mirrors[-1]["url"].rstrip("/")
        root_lines, root_header = _endpoint(mirrors[-1], "mirror%d" % len(mirrors), node_dir, [], capabilities=True)
    credentials = bool(root_header)
    for url_text, options, prefix, capabilities in hosts:
        url = _toml_string(url_text)
        lines, header = _endpoint(options, prefix, node_dir, files, capabilities=capabilities)
        credentials = credentials or bool(header)
        table = ["[host.%s]" % url] + ["  " + line for line in lines]
        if header:
            table += ["  [host.%s.header]" % url] + ["    " + line for line in header]
        tables.append("\n".join(table) + "\n")
    root = ["server = %s" % _toml_string(root_url)] if root_url is not None else []
    root += root_lines
    if root_header:
        # A table ends the root's keys: it comes after them.
        root += ([""] if root else []) + ["[header]"] + ["  " + line for line in root_header]
    text = HEADER % json.dumps(key)
    if root:
        text += "\n".join(root) + "\n"
    for table in tables:
        text += "\n" + table
    return text, files, credentials


def registry_files(value: t.Any, mount: str) -> list[dict[str, t.Any]]:
    """Every file of the registries directory: {path, content or src, mode, secret}, in a stable order.

    ``path`` is relative to the registries directory (``<registry>/hosts.toml``, ``<registry>/<name>.pem``);
    MOUNT is that directory as the node sees it. ``secret`` files (a hosts.toml with credentials, client
    keys) are for no_log. Raises RegistriesError when the value has problems (the settings check names
    them first).
    """
    problems = registry_problems(value)
    if problems:
        raise RegistriesError("; ".join(problems))
    result = []
    for key in sorted(value):
        text, files, credentials = hosts_toml(key, value[key], posixpath.join(mount, key))
        result.append({"path": key + "/hosts.toml", "content": text, "mode": "0600", "secret": credentials})
        result += [{"path": key + "/" + item["name"], "src": item["src"], "mode": "0600", "secret": item["secret"]}
                   for item in files]
    return result


def leftovers(found: t.Iterable[str], files: t.Iterable[Mapping[str, t.Any]]) -> list[str]:
    """What FOUND (paths relative to the registries directory) holds beyond FILES (of registry_files).

    Only the topmost: a registry's directory that is gone from the setting, not each file in it.
    """
    planned = [item["path"] for item in files]
    directories = {posixpath.dirname(path) for path in planned}
    keep = set(planned) | directories
    return sorted(path for path in {posixpath.normpath(path) for path in found}
                  if path not in keep and posixpath.dirname(path) in directories | {""})


def redacted(value: t.Any) -> t.Any:
    """VALUE with every password replaced, for messages and the plan that Ansible prints."""
    if isinstance(value, Mapping):
        return {key: "<redacted>" if key == "password" else redacted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redacted(item) for item in value]
    return value
