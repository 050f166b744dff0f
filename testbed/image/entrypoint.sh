#!/usr/bin/env bash
# PID 1 of a test-bed host container (installed as /usr/local/sbin/u7s-testbed-entrypoint).
# The outer engine cannot run --privileged here, so this does the few things a
# privileged container would have had, plus what a real machine has and a
# container lacks, then hands over to systemd. Runs again at every restart.
set -euo pipefail

# systemd and the nested rootless engines write below /sys; docker mounts it ro.
mount -o remount,rw /sys
# Each cgroup v1 hierarchy arrives as a read-only bind mount: systemd needs
# name=systemd writable, and the product delegates the controllers to its user.
# These are the container's own mounts (its mount namespace), not the machine's.
while read -r mnt; do
    mount -o remount,bind,rw "$mnt"
done < <(awk '$5 ~ "^/sys/fs/cgroup(/|$)" { print $5 }' /proc/self/mountinfo)

# Device nodes a machine has and an unprivileged container does not:
# tun (slirp4netns/pasta), fuse (fuse-overlayfs), kmsg (journald, kubelet).
mkdev() { # path mode major minor
    [[ -e $1 ]] && return 0
    mkdir -p "${1%/*}"
    mknod -m "$2" "$1" c "$3" "$4"
}
mkdev /dev/net/tun 0666 10 200
mkdev /dev/fuse 0666 10 229
mkdev /dev/kmsg 0644 1 11

# The image ships without SSH host keys so that every host has its own.
ssh-keygen -A >/dev/null

# Public key for the admin account, bind-mounted by `testbed.sh up`.
# /home is a per-host volume; make sure the home exists even if it was emptied.
if [[ ! -d /home/admin ]]; then
    cp -a /etc/skel /home/admin
    chown -R admin:admin /home/admin
fi
if [[ -r /etc/u7s-testbed/authorized_keys ]]; then
    install -d -o admin -g admin -m 0700 /home/admin/.ssh
    install -o admin -g admin -m 0600 /etc/u7s-testbed/authorized_keys /home/admin/.ssh/authorized_keys
fi

# A real host kernel ships /lib/modules/$(uname -r)/modules.builtin; the
# product consults it (as do dockerd-rootless-setuptool.sh and, through
# depmod's index, modprobe/systemd-modules-load) to accept built-in modules.
# This machine's kernel is monolithic and the container has no /lib/modules.
# "CONFIG symbol" "path below kernel/" for the modules the product may ask for.
builtin_candidates() {
    cat <<'EOF'
TUN drivers/net/tun
BRIDGE net/bridge/bridge
BRIDGE_NETFILTER net/bridge/br_netfilter
VETH drivers/net/veth
VXLAN drivers/net/vxlan/vxlan
OVERLAY_FS fs/overlayfs/overlay
FUSE_FS fs/fuse/fuse
LLC net/llc/llc
STP net/802/stp
NETFILTER_XTABLES net/netfilter/x_tables
NETFILTER_XTABLES net/netfilter/xt_tcpudp
NETFILTER_XT_TARGET_MASQUERADE net/netfilter/xt_MASQUERADE
NETFILTER_XT_MATCH_ADDRTYPE net/netfilter/xt_addrtype
NETFILTER_XT_MATCH_COMMENT net/netfilter/xt_comment
NETFILTER_XT_MATCH_CONNTRACK net/netfilter/xt_conntrack
NETFILTER_XT_MARK net/netfilter/xt_mark
NETFILTER_XT_MATCH_MULTIPORT net/netfilter/xt_multiport
NETFILTER_XT_NAT net/netfilter/xt_nat
NETFILTER_XT_MATCH_STATISTIC net/netfilter/xt_statistic
NF_TABLES net/netfilter/nf_tables
NFT_COMPAT net/netfilter/nft_compat
NF_CONNTRACK net/netfilter/nf_conntrack
NF_NAT net/netfilter/nf_nat
IP_SET net/netfilter/ipset/ip_set
IP_NF_IPTABLES net/ipv4/netfilter/ip_tables
IP_NF_FILTER net/ipv4/netfilter/iptable_filter
IP_NF_NAT net/ipv4/netfilter/iptable_nat
IP_NF_MANGLE net/ipv4/netfilter/iptable_mangle
IP_NF_RAW net/ipv4/netfilter/iptable_raw
IP6_NF_IPTABLES net/ipv6/netfilter/ip6_tables
IP6_NF_FILTER net/ipv6/netfilter/ip6table_filter
IP6_NF_NAT net/ipv6/netfilter/ip6table_nat
EOF
}
write_modules_builtin() {
    local dir config sym path name
    dir=/lib/modules/$(uname -r)
    # Leave a real kernel tree (someone bind-mounted one) alone.
    if [[ -e $dir/modules.builtin && ! -e $dir/.u7s-testbed-generated ]]; then
        return 0
    fi
    mkdir -p "$dir"
    config=""
    if [[ -r /proc/config.gz ]]; then
        config=$(zcat /proc/config.gz)
    fi
    while read -r sym path; do
        name=${path##*/}
        if [[ -n $config ]]; then
            # Only what this kernel really has built in (=y, not =m).
            grep -qx "CONFIG_${sym}=y" <<<"$config" || continue
        elif [[ -e /proc/modules ]]; then
            # Modular kernel without its config: built-ins show up in
            # /sys/module without an initstate (only some of them, sadly).
            [[ -d /sys/module/$name && ! -e /sys/module/$name/initstate ]] || continue
        fi
        # else: no module support at all, so whatever exists is built in.
        printf 'kernel/%s.ko\n' "$path"
    done < <(builtin_candidates) >"$dir/modules.builtin"
    : >"$dir/.u7s-testbed-generated"
    # modprobe reads the binary index, not the text file.
    depmod -a "$(uname -r)" 2>/dev/null || true
}
write_modules_builtin

exec /sbin/init "$@"
