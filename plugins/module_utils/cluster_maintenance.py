# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""The pure parts of the kubeadm role's certificate and etcd entry points.

certificate_expiration
  `kubeadm certs check-expiration` (text output, stable since kubeadm 1.20) as a list
  of dictionaries, certificates first, then the certificate authorities.
snapshot_name
  etcd-<control-plane host>-<UTC timestamp>.db, the name a backup gets on the controller.
etcd_member
  The member etcd runs as (name, data directory, peer URL, initial cluster), read
  from the command of kubeadm's static pod manifest; a restore must use the same.
restore_refusal
  Why etcd-restore.yml must not start (empty when it may).
"""

from __future__ import annotations

import datetime
import re
import typing as t
from collections.abc import Mapping

# kubeadm prints "Aug 19, 2026 09:03 UTC" (Go layout "Jan 02, 2006 15:04 MST", always UTC).
_EXPIRES = re.compile(r"([A-Z][a-z]{2} [0-9]{2}, [0-9]{4} [0-9]{2}:[0-9]{2}) UTC")
_MISSING = "!MISSING!"
_TIMESTAMP = re.compile(r"^[0-9]{8}T[0-9]{6}Z$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _expires(text: str) -> str:
    parsed = datetime.datetime.strptime(text, "%b %d, %Y %H:%M")
    return parsed.strftime("%Y-%m-%dT%H:%M:00Z")


def _residual_days(expires: str, now: datetime.datetime | None) -> int | None:
    if now is None:
        return None
    when = datetime.datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.timezone.utc)
    return (when - now) // datetime.timedelta(days=1)


def _summary(entry: Mapping) -> str:
    parts = ["expires %s (%s)" % (entry["expires"], entry["residual"])]
    if entry.get("days_left") is not None and entry["days_left"] < 0:
        parts[0] = "EXPIRED %s" % entry["expires"]
    parts.append("signed by %s" % entry["authority"] if entry["authority"] else "certificate authority")
    if entry["externally_managed"]:
        parts.append("externally managed (kubeadm does not renew it)")
    return "%s: %s" % (entry["name"], ", ".join(parts))


def certificate_expiration(output: str, now: datetime.datetime | None = None) -> list[dict[str, t.Any]]:
    """The certificates and authorities of `kubeadm certs check-expiration`'s text output.

    Each entry: name, kind (certificate or authority), expires (ISO 8601, UTC, None when
    missing), residual (as kubeadm prints it, "<invalid>" once expired), authority (the
    signing CA's name; None for the authorities), externally_managed, missing, summary
    (one line for people) and, when NOW is given, days_left (whole days, negative once expired).
    Raises ValueError when the output holds no certificate table.
    """
    if not isinstance(output, str):
        raise ValueError("the output of kubeadm certs check-expiration must be text, got %s." % type(output).__name__)
    entries: list[dict[str, t.Any]] = []
    section = None
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith("CERTIFICATE AUTHORITY") and "EXPIRES" in stripped:
            section = "authority"
            continue
        if stripped.startswith("CERTIFICATE") and "EXPIRES" in stripped:
            section = "certificate"
            continue
        if section is None or not stripped:
            continue
        if stripped.startswith(_MISSING):
            name = stripped[len(_MISSING):].split()[0]
            entries.append({"name": name, "kind": section, "expires": None, "residual": None, "authority": None,
                            "externally_managed": False, "missing": True, "summary": "%s: MISSING" % name})
            continue
        match = _EXPIRES.search(stripped)
        if not match:
            # kubeadm's own log lines ([check-expiration] ...) and anything else.
            continue
        name = stripped[:match.start()].split()
        rest = stripped[match.end():].split()
        if len(name) != 1 or len(rest) < 2:
            raise ValueError("cannot read this line of kubeadm certs check-expiration: %r." % stripped)
        expires = _expires(match.group(1))
        entry: dict[str, t.Any] = {
            "name": name[0], "kind": section, "expires": expires, "residual": rest[0],
            "authority": rest[1] if section == "certificate" and len(rest) >= 3 else None,
            "externally_managed": rest[-1] in ("yes", "true"), "missing": False,
        }
        if now is not None:
            entry["days_left"] = _residual_days(expires, now)
        entry["summary"] = _summary(entry)
        entries.append(entry)
    if not any(entry["kind"] == "certificate" for entry in entries):
        raise ValueError("kubeadm certs check-expiration printed no certificate table.")
    return entries


def snapshot_name(host: t.Any, timestamp: t.Any) -> str:
    """etcd-<host>-<timestamp>.db; the timestamp is UTC, YYYYMMDDTHHMMSSZ (sorts by time)."""
    if not isinstance(host, str) or not _HOST.match(host):
        raise ValueError("the control-plane host must be an inventory name (letters, digits, '.', '_', '-'), got %r."
                         % (host,))
    if not isinstance(timestamp, str) or not _TIMESTAMP.match(timestamp):
        raise ValueError("the timestamp must be UTC as YYYYMMDDTHHMMSSZ, got %r." % (timestamp,))
    return "etcd-%s-%s.db" % (host, timestamp)


def _flags(command: t.Any) -> dict[str, str]:
    if not isinstance(command, list) or not all(isinstance(arg, str) for arg in command):
        raise ValueError("the etcd container's command must be a list of strings.")
    flags = {}
    for arg in command:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            flags[key] = value
    return flags


def etcd_member(manifest: t.Any) -> dict[str, str]:
    """name, data_dir, peer_url, initial_cluster and image of kubeadm's etcd static pod manifest."""
    if not isinstance(manifest, Mapping):
        raise ValueError("the etcd manifest must be a dictionary (the parsed YAML of etcd.yaml).")
    containers = (manifest.get("spec") or {}).get("containers") or []
    etcd = next((c for c in containers if isinstance(c, Mapping) and c.get("name") == "etcd"), None)
    if etcd is None:
        raise ValueError("the etcd manifest has no container named etcd.")
    flags = _flags(etcd.get("command"))
    missing = [key for key in ("name", "data-dir", "initial-advertise-peer-urls") if not flags.get(key)]
    if missing:
        raise ValueError("the etcd container's command lacks %s." % ", ".join("--" + key for key in missing))
    peer_url = flags["initial-advertise-peer-urls"]
    return {
        "name": flags["name"],
        "data_dir": flags["data-dir"].rstrip("/") or "/",
        "peer_url": peer_url,
        # kubeadm writes --initial-cluster for a single member (name=peer URL); rebuilt when absent.
        "initial_cluster": flags.get("initial-cluster") or "%s=%s" % (flags["name"], peer_url),
        "image": str(etcd.get("image") or ""),
    }


def _true(value: t.Any) -> bool:
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on")


def restore_refusal(snapshot: t.Any, found: t.Any, confirm: t.Any, host: str) -> str:
    """Why etcd-restore.yml must not change anything, or '' when it may go on.

    SNAPSHOT is kubeadm_etcd_restore_snapshot, FOUND the controller's stat result for it (a
    dictionary with exists, isreg, size; ignored while SNAPSHOT is empty), CONFIRM
    kubeadm_etcd_restore_confirm.
    """
    if not isinstance(snapshot, str) or not snapshot.strip():
        return ("%s: kubeadm_etcd_restore_snapshot is not set; nothing was changed. Fix: pass the snapshot on the controller, "
                "-e kubeadm_etcd_restore_snapshot=<path to an etcd-<host>-<time>.db that etcd-backup.yml fetched>." % host)
    found = found if isinstance(found, Mapping) else {}
    if not found.get("exists"):
        return ("%s: kubeadm_etcd_restore_snapshot (%s) does not exist on the controller; nothing was changed. Fix: give the "
                "path of a snapshot etcd-backup.yml fetched (a relative path is taken from the directory ansible-playbook runs in)."
                % (host, snapshot))
    if not found.get("isreg"):
        return ("%s: kubeadm_etcd_restore_snapshot (%s) is not a regular file on the controller; nothing was changed. "
                "Fix: give the path of a snapshot file." % (host, snapshot))
    if not found.get("size"):
        return ("%s: kubeadm_etcd_restore_snapshot (%s) is empty; nothing was changed. Fix: give a snapshot etcd-backup.yml "
                "fetched and verified." % (host, snapshot))
    if not _true(confirm):
        return ("%s: restoring %s replaces the whole cluster state (every object written since the snapshot is lost) "
                "and stops the control plane meanwhile; nothing was changed. Fix: if that is what you want, add "
                "-e kubeadm_etcd_restore_confirm=true." % (host, snapshot))
    return ""
