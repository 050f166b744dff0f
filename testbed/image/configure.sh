#!/usr/bin/env bash
# Turns the plain debootstrap root file system into a test-bed host image.
# Runs once, as root, in a `docker build` step (no network needed);
# SUITE, MIRROR and SECURITY_MIRROR come in as build arguments.
set -euo pipefail
: "${SUITE:?}" "${MIRROR:?}" "${SECURITY_MIRROR:?}"

# --- apt: the same Debian mirror as the machine, like a freshly installed host.
rm -f /etc/apt/sources.list
cat >/etc/apt/sources.list.d/debian.sources <<EOF
Types: deb
URIs: ${MIRROR}
Suites: ${SUITE} ${SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${SECURITY_MIRROR}
Suites: ${SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# Each host gets a per-host cache bind-mounted at /var/cache/apt/archives so
# that repeated runs of the product's roles do not download the .debs again:
# never delete them (`apt` would, by default, after a successful install).
rm -f /etc/apt/apt.conf.d/docker-clean
cat >/etc/apt/apt.conf.d/10u7s-testbed-keep-debs <<'EOF'
// u7s test bed: keep downloaded packages in the per-host archive cache.
APT::Keep-Downloaded-Packages "true";
Binary::apt::APT::Keep-Downloaded-Packages "true";
EOF
# Lists would be stale (and not match the sources above); the roles update them.
apt-get clean
rm -rf /var/lib/apt/lists/*
mkdir -p /var/lib/apt/lists/partial

# --- identity: generated per host at first boot, never baked into the image.
rm -f /etc/ssh/ssh_host_*
: >/etc/machine-id
if [[ -f /var/lib/dbus/machine-id && ! -L /var/lib/dbus/machine-id ]]; then
    rm -f /var/lib/dbus/machine-id
fi

# pam_env reads this at every login; a real install has one.
printf 'LANG=C.UTF-8\n' >/etc/default/locale

# --- the admin account Ansible logs in as (key installed by the entrypoint).
useradd --create-home --shell /bin/bash --groups sudo --comment 'u7s test bed admin' admin
usermod --password '*' admin # no password, but not "locked" for sshd
install -d -o admin -g admin -m 0700 /home/admin/.ssh
printf 'admin ALL=(ALL:ALL) NOPASSWD: ALL\n' >/etc/sudoers.d/90-u7s-testbed-admin
chmod 0440 /etc/sudoers.d/90-u7s-testbed-admin
visudo -cqf /etc/sudoers.d/90-u7s-testbed-admin

# --- guards: the hosts share the machine's kernel (init user namespace, all
# capabilities, writable /proc/sys and /sys), so keep their boot from changing
# it. Only network sysctls are per network namespace, i.e. per host: apply
# just those (distro defaults such as kernel.pid_max would hit the machine).
mkdir -p /etc/systemd/system/systemd-sysctl.service.d
cat >/etc/systemd/system/systemd-sysctl.service.d/u7s-testbed.conf <<'EOF'
# u7s test bed: this host shares the machine's kernel; apply only the
# per-network-namespace keys (net.*), never kernel-wide ones.
[Service]
ExecStart=
ExecStart=/usr/lib/systemd/systemd-sysctl --prefix=net
EOF
# udev would re-trigger and rewrite the machine's devices (uevents and /sys
# are shared). Not installed now; masked in case a package pulls it in.
for unit in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
    systemd-udev-trigger.service systemd-udev-settle.service; do
    ln -sfn /dev/null "/etc/systemd/system/${unit}"
done

# --- units that cannot work in a container. None so far: trixie and bookworm
# both boot to "running" with the flags of `testbed.sh up` (debugfs/tracefs
# mounts and systemd-modules-load work; no getty starts without a tty).
# `testbed.sh up` prints the failed units if a host ever comes up degraded.
MASK=()
for unit in "${MASK[@]}"; do
    ln -sfn /dev/null "/etc/systemd/system/${unit}"
done

chmod 0755 /usr/local/sbin/u7s-testbed-entrypoint
