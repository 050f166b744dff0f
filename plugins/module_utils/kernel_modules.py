# Copyright (c) u7s.cluster developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

"""Find out which kernel modules are loaded or built in, and load the rest.

Used by the ``u7s.cluster.kernel_modules`` module. Every reader takes ``root``
(the directory standing in for ``/``) and the loader is passed in, so unit
tests run against a fake tree with a fake modprobe.
"""

from __future__ import annotations

import os
import typing as t
from dataclasses import dataclass, field

# (return code, stdout, stderr), like AnsibleModule.run_command.
ModprobeRunner = t.Callable[[str], t.Tuple[int, str, str]]

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


def canonical_name(name: str) -> str:
    """Kernel module names treat - and _ alike; the kernel itself uses _."""
    return name.strip().replace("-", "_")


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None


def read_proc_modules(root: str = "/") -> set[str]:
    """Names of loaded modules (first column of /proc/modules)."""
    text = _read(os.path.join(root, "proc/modules")) or ""
    return {canonical_name(line.split()[0]) for line in text.splitlines() if line.strip()}


def sysfs_module_exists(name: str, root: str = "/") -> bool:
    """Whether /sys/module/<name> exists (loaded, or built in with parameters)."""
    return os.path.isdir(os.path.join(root, "sys/module", canonical_name(name)))


def parse_modules_builtin(text: str) -> set[str]:
    """Module names from modules.builtin (kernel/net/bridge/br_netfilter.ko lines)."""
    names = set()
    for line in text.splitlines():
        base = os.path.basename(line.strip())
        for suffix in MODULE_SUFFIXES:
            if base.endswith(suffix):
                names.add(canonical_name(base[: -len(suffix)]))
                break
    return names


def parse_modules_builtin_modinfo(text: str) -> set[str]:
    """Module names from modules.builtin.modinfo (NUL separated module.key=value records)."""
    return {
        canonical_name(record.split(".", 1)[0])
        for record in text.split("\0")
        if "." in record.split("=", 1)[0]
    }


def read_builtin_modules(kernel_release: str, root: str = "/") -> set[str]:
    """Modules built into the kernel, from modules.builtin and modules.builtin.modinfo."""
    directory = os.path.join(root, "lib/modules", kernel_release)
    names = parse_modules_builtin(_read(os.path.join(directory, "modules.builtin")) or "")
    names |= parse_modules_builtin_modinfo(_read(os.path.join(directory, "modules.builtin.modinfo")) or "")
    return names


@dataclass
class KernelModulesResult:
    """What happened to each requested module, in request order."""

    already_loaded: list[str] = field(default_factory=list)
    builtin: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    # name -> modprobe's error message
    unavailable: dict[str, str] = field(default_factory=dict)
    # already_loaded + builtin + loaded, in request order
    available: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether a module was (or, in check mode, would be) loaded."""
        return bool(self.loaded)


def ensure_modules(
    names: t.Iterable[str],
    modprobe: ModprobeRunner,
    kernel_release: str,
    root: str = "/",
) -> KernelModulesResult:
    """Classify each module and load those that are neither loaded nor built in.

    modprobe(name) loads a module; in check mode the caller passes a runner
    that only asks (modprobe --dry-run), so "loaded" means "would be loaded".
    A failing modprobe lands the module in ``unavailable`` instead of raising:
    a monolithic or locked-down kernel may lack a module nobody needs.
    """
    result = KernelModulesResult()
    loaded_now = read_proc_modules(root)
    builtin = read_builtin_modules(kernel_release, root)
    seen = set()
    for name in names:
        key = canonical_name(name)
        if not key or key in seen:
            continue
        seen.add(key)
        if key in loaded_now:
            result.already_loaded.append(name)
        elif key in builtin:
            result.builtin.append(name)
        elif sysfs_module_exists(key, root):
            # Built in, but modules.builtin is not there (e.g. in a container).
            result.already_loaded.append(name)
        else:
            rc, stdout, stderr = modprobe(name)
            if rc != 0:
                result.unavailable[name] = (stderr or stdout).strip() or "modprobe exited with %d" % rc
                continue
            result.loaded.append(name)
        result.available.append(name)
    return result


def render_modules_load_file(names: t.Iterable[str]) -> str:
    """Content of a modules-load.d(5) file that loads names at boot."""
    lines = [
        "# Managed by Ansible (u7s.cluster.kernel_modules); local changes are overwritten.",
        "# Kernel modules that rootless Kubernetes (Usernetes) needs, loaded at boot.",
    ]
    lines.extend(names)
    return "\n".join(lines) + "\n"
