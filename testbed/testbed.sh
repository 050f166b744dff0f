#!/usr/bin/env bash
# Local multi-host test bed for the u7s.cluster collection.
#
# "Machines" are containers of a rootful outer dockerd: Debian with systemd as
# PID 1 and sshd, on one bridge network, reached over SSH by Ansible like a
# real fleet. The product's roles install the container engines inside them.
#
# Usage: testbed/testbed.sh deps | image | up [N] | add I | down | purge | status
#   add I   one more host (hostI) beside a running test bed; prints its inventory entry
#
# Environment:
#   U7S_TESTBED_OS       Debian suite of the hosts (default trixie; bookworm = Debian 12)
#   U7S_TESTBED_HOSTS    number of hosts for `up` (default 2)
#   U7S_CACHE_DIR        cache root, outside the clone so CI reuses it (default /var/cache/u7s)
#   U7S_TESTBED_SUBNET   IPv4 /24 of the hosts' network (default 172.30.0.0/24)
#   U7S_TESTBED_MIRROR / U7S_TESTBED_SECURITY_MIRROR
#                        Debian mirrors (default: the machine's apt sources)
#   U7S_TESTBED_BOOT_TIMEOUT  seconds to wait for each host (default 180)
#   U7S_TESTBED_CPUS     CPUs each host may use (docker run --cpus, e.g. 0.5; default: no
#                        cap). Scaling figures cap N hosts at N x this <= the machine's cores,
#                        so a larger bed measures the collection, not a busier machine.
set -euo pipefail
# dockerd, debootstrap, mknod... live in sbin, which a CI PATH may lack.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

TESTBED_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$TESTBED_DIR")
# log/die, take_lock, short_hash, remove_tree, run_debootstrap, usage.
# shellcheck source-path=SCRIPTDIR/.. source=lib/u7s-shell.sh
. "$REPO_DIR/lib/u7s-shell.sh" "[testbed] " "[testbed] ERROR: "
IMAGE_DIR=$TESTBED_DIR/image
STATE_DIR=$TESTBED_DIR/.state
KEY=$STATE_DIR/id_ed25519
INVENTORY=$REPO_DIR/inventories/testbed/hosts.yml
CACHE_DIR=$U7S_CACHE_ROOT/testbed
LOCK_FILE=/run/lock/u7s-testbed.lock

SUITE=${U7S_TESTBED_OS:-trixie}
SUBNET=${U7S_TESTBED_SUBNET:-172.30.0.0/24}
BOOT_TIMEOUT=${U7S_TESTBED_BOOT_TIMEOUT:-180}
CPUS=${U7S_TESTBED_CPUS:-}
DOCKERD_TIMEOUT=60

LABEL_KEY=io.u7s.testbed
LABEL=$LABEL_KEY=1
NETWORK=u7s-testbed
CONTAINER_PREFIX=u7s-tb-
HOST_REPO=u7s-testbed-host
ROOTFS_REPO=u7s-testbed-rootfs

# What a minimal Debian server has; no container engine on purpose: the
# product's roles install those with apt, as on a real host.
PACKAGES=(systemd systemd-sysv dbus dbus-user-session openssh-server sudo python3
    iproute2 iptables kmod ca-certificates procps acl ethtool less)

SSH_OPTS=(-i "$KEY" -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)

need_root() {
    [[ $EUID -eq 0 ]] || die "run as root (debootstrap and the outer dockerd need it)"
}

# Temporary directories and files to remove on exit, even after a failure
# (remove_tree: never through a mount debootstrap left).
CLEANUP_DIRS=()
CLEANUP_FILES=()
cleanup() {
    local dir
    for dir in "${CLEANUP_DIRS[@]}"; do
        remove_tree "$dir"
    done
    rm -f "${CLEANUP_FILES[@]}"
}
trap cleanup EXIT

# ---------------------------------------------------------------- deps

engine_up() { docker info >/dev/null 2>&1; }

# Start the outer dockerd if it is not answering. This machine kind has no
# systemd as PID 1 (and CI ends every process between runs), so it is started
# in the background by hand; a systemd machine gets `systemctl start docker`.
start_engine() {
    engine_up && return 0
    command -v dockerd >/dev/null || die "dockerd is not installed: run '$0 deps'"
    mkdir -p "$CACHE_DIR"
    local logfile=$CACHE_DIR/dockerd.log deadline
    if [[ -d /run/systemd/system ]]; then
        log "starting docker.service"
        systemctl start docker.service || true
    elif ! pgrep -x dockerd >/dev/null; then
        log "starting the outer dockerd in the background (log: $logfile)"
        # 9>&-: it must not inherit (and hold forever) our lock.
        setsid -f dockerd >>"$logfile" 2>&1 </dev/null 9>&-
    else
        log "dockerd is running but not answering yet; waiting"
    fi
    deadline=$((SECONDS + DOCKERD_TIMEOUT))
    until engine_up; do
        if ((SECONDS >= deadline)); then
            tail -n 20 "$logfile" >&2 2>/dev/null || true
            die "the outer dockerd did not answer within ${DOCKERD_TIMEOUT}s (log: $logfile)"
        fi
        sleep 1
    done
}

cmd_deps() {
    need_root
    local missing=()
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
        missing+=(docker.io)
    fi
    if ! command -v debootstrap >/dev/null; then
        missing+=(debootstrap)
    fi
    if ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
        missing+=(openssh-client)
    fi
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        # Without an init system, keep the packages' init scripts from running:
        # Debian's /etc/init.d/docker would mount cgroup hierarchies on the machine.
        local policy=/usr/sbin/policy-rc.d
        if [[ ! -d /run/systemd/system && ! -e $policy ]]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy"
            chmod 0755 "$policy"
            CLEANUP_FILES+=("$policy")
        fi
        apt-get update -q
        # No Recommends: cgroupfs-mount/apparmor/needrestart are not wanted here.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    start_engine
    log "outer engine: docker $(docker version --format '{{.Server.Version}}')"
}

# ---------------------------------------------------------------- image

# The machine's Debian mirror (first non-security URI in its apt sources).
detect_mirror() {
    local uri
    uri=$(grep -hsE '^[[:space:]]*(URIs:|deb[[:space:]])' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources | grep -oE 'https?://[^][:space:]]+' | grep -E '/debian/?$' | head -n 1) || true
    printf '%s\n' "${uri%/}"
}
MIRROR=${U7S_TESTBED_MIRROR:-$(detect_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if [[ -z ${U7S_TESTBED_SECURITY_MIRROR:-} && $MIRROR == */debian ]]; then
    SECURITY_MIRROR=${MIRROR}-security
else
    SECURITY_MIRROR=${U7S_TESTBED_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
fi

# Cache keys: the inputs of each step, including the code of the step itself
# (`declare -f` prints the function body without comments).
rootfs_key() {
    {
        printf 'suite=%s\nmirror=%s\npackages=%s\n' "$SUITE" "$MIRROR" "${PACKAGES[*]}"
        declare -f build_rootfs run_debootstrap
    } | short_hash 12
}
image_key() {
    local file
    {
        printf 'rootfs=%s\nsecurity=%s\n' "$(rootfs_key)" "$SECURITY_MIRROR"
        declare -f build_host_image
        for file in "$IMAGE_DIR"/*; do
            printf '== %s\n' "${file##*/}"
            cat "$file"
        done
    } | short_hash 12
}

# debootstrap into a scratch directory and pack it as a tarball.
build_rootfs() {
    local tarball=$1 work debs logfile
    work=$CACHE_DIR/work/rootfs-$SUITE.$$
    debs=$CACHE_DIR/debootstrap-debs/$SUITE
    logfile=$CACHE_DIR/logs/debootstrap-$SUITE.log
    CLEANUP_DIRS+=("$work")
    mkdir -p "$work" "$debs" "$(dirname "$tarball")"
    log "debootstrap $SUITE from $MIRROR (log: $logfile)"
    run_debootstrap "$logfile" "$SUITE" "$work/rootfs" "$MIRROR" --components=main --cache-dir="$debs" \
        --include="$(IFS=,; printf '%s' "${PACKAGES[*]}")"
    tar -C "$work/rootfs" --numeric-owner --xattrs --xattrs-include='*' -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    remove_tree "$work"
}

# The image: the tarball imported as a base, then image/Dockerfile (which runs
# image/configure.sh and installs image/entrypoint.sh). Docker 20.10 refuses
# `import -c STOPSIGNAL`, hence the build step.
build_host_image() {
    local tag=$1 base=$2 tarball=$3 logfile
    if ! docker image inspect "$base" >/dev/null 2>&1; then
        log "importing $tarball as $base"
        docker import "$tarball" "$base" >/dev/null
    fi
    logfile=$CACHE_DIR/logs/build-$SUITE.log
    log "building $tag (log: $logfile)"
    if ! DOCKER_BUILDKIT=0 docker build --force-rm -t "$tag" \
        --build-arg "BASE=$base" --build-arg "SUITE=$SUITE" \
        --build-arg "MIRROR=$MIRROR" --build-arg "SECURITY_MIRROR=$SECURITY_MIRROR" \
        --label "$LABEL_KEY.image=1" --label "$LABEL_KEY.suite=$SUITE" \
        "$IMAGE_DIR" >"$logfile" 2>&1; then
        tail -n 25 "$logfile" >&2 || true
        die "building $tag failed (log: $logfile)"
    fi
}

# Drop other builds of the same suite so the cache does not grow forever.
prune_old() {
    local keep_tag=$1 keep_base=$2 keep_tar=$3 ref tar
    while read -r ref; do
        [[ $ref == "$keep_tag" || $ref == "$keep_base" ]] && continue
        docker rmi "$ref" >/dev/null 2>&1 || true
    done < <(docker images --format '{{.Repository}}:{{.Tag}}' "$HOST_REPO" | grep -F ":$SUITE-" || true
        docker images --format '{{.Repository}}:{{.Tag}}' "$ROOTFS_REPO" | grep -F ":$SUITE-" || true)
    for tar in "$CACHE_DIR/rootfs/$SUITE"-*.tar; do
        [[ -e $tar && $tar != "$keep_tar" ]] && rm -f "$tar"
    done
    return 0
}

# Sets HOST_IMAGE, building only what the caches do not have.
ensure_image() {
    [[ -e /usr/share/debootstrap/scripts/$SUITE ]] || die "debootstrap does not know suite '$SUITE' (U7S_TESTBED_OS)"
    local rkey key base tarball
    rkey=$(rootfs_key)
    key=$(image_key)
    HOST_IMAGE=$HOST_REPO:$SUITE-$key
    base=$ROOTFS_REPO:$SUITE-$rkey
    tarball=$CACHE_DIR/rootfs/$SUITE-$rkey.tar
    if docker image inspect "$HOST_IMAGE" >/dev/null 2>&1; then
        log "image $HOST_IMAGE is up to date"
    else
        if [[ ! -f $tarball ]] && ! docker image inspect "$base" >/dev/null 2>&1; then
            build_rootfs "$tarball"
        fi
        build_host_image "$HOST_IMAGE" "$base" "$tarball"
        log "image $HOST_IMAGE built"
    fi
    # Images still used by running hosts stay; a later run removes them.
    prune_old "$HOST_IMAGE" "$base" "$tarball"
}

cmd_image() {
    need_root
    cmd_deps
    ensure_image
    docker image ls "$HOST_IMAGE"
}

# ---------------------------------------------------------------- up / down

# Removes the test bed's containers, networks and volumes (by label only).
remove_docker_objects() {
    local ids
    ids=$(docker ps -aq --filter "label=$LABEL")
    # shellcheck disable=SC2086 # one id per word
    [[ -z $ids ]] || docker rm -f $ids >/dev/null
    ids=$(docker network ls -q --filter "label=$LABEL")
    # shellcheck disable=SC2086
    [[ -z $ids ]] || docker network rm $ids >/dev/null
    ids=$(docker volume ls -q --filter "label=$LABEL")
    # shellcheck disable=SC2086
    [[ -z $ids ]] || docker volume rm $ids >/dev/null
}

ensure_keypair() {
    install -d -m 0700 "$STATE_DIR"
    [[ -f $KEY && -f $KEY.pub ]] && return 0
    rm -f "$KEY" "$KEY.pub"
    ssh-keygen -q -t ed25519 -N '' -C "u7s-testbed@$(hostname)" -f "$KEY"
}

# Host i gets <first three octets>.(10+i) of the /24; .1 is the gateway.
net_prefix() {
    local net=${SUBNET%/24}
    printf '%s\n' "${net%.0}"
}
ip_of() { printf '%s.%d\n' "$(net_prefix)" $((10 + $1)); }

wait_booted() {
    local name=$1 host=$2 deadline state
    deadline=$((SECONDS + BOOT_TIMEOUT))
    while :; do
        if [[ $(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null) != true ]]; then
            docker logs --tail 30 "$name" >&2 || true
            die "$host: the container stopped while booting (docker logs $name)"
        fi
        state=$(docker exec "$name" timeout 15 systemctl is-system-running --wait 2>/dev/null) || true
        case $state in
        running) return 0 ;;
        degraded)
            log "$host: systemd is degraded; failed units (mask them in testbed/image/configure.sh if they cannot work in a container):"
            docker exec "$name" systemctl --failed --no-legend --plain >&2 || true
            return 0
            ;;
        esac
        if ((SECONDS >= deadline)); then
            docker exec "$name" systemctl list-jobs --no-pager >&2 || true
            die "$host: systemd did not finish booting within ${BOOT_TIMEOUT}s (state: ${state:-unknown})"
        fi
        sleep 1
    done
}

wait_ssh() {
    local host=$1 ip=$2 deadline
    deadline=$((SECONDS + BOOT_TIMEOUT))
    until ssh "${SSH_OPTS[@]}" "admin@$ip" sudo -n true 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            ssh "${SSH_OPTS[@]}" "admin@$ip" sudo -n true || true
            die "$host: no SSH (with sudo) as admin@$ip within ${BOOT_TIMEOUT}s"
        fi
        sleep 1
    done
}

# One host's entry in the inventory: indent, host number.
inventory_host() {
    local ssh_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'
    printf '%shost%d:\n' "$1" "$2"
    printf '%s  ansible_host: %s\n' "$1" "$(ip_of "$2")"
    printf '%s  ansible_user: admin\n' "$1"
    printf '%s  ansible_ssh_private_key_file: %s\n' "$1" "$KEY"
    printf "%s  ansible_ssh_common_args: '%s'\n" "$1" "$ssh_args"
    printf '%s  ansible_python_interpreter: /usr/bin/python3\n' "$1"
}

# The layout molecule/default/create.yml reads: u7s_cluster.children.*.hosts.
# The first U7S_TESTBED_CONTROL_PLANES hosts (1, 3 or 5; default 1) are control planes.
write_inventory() {
    local n=$1 i tmp cps=${U7S_TESTBED_CONTROL_PLANES:-1}
    [[ $cps =~ ^[135]$ ]] || die "U7S_TESTBED_CONTROL_PLANES must be 1, 3 or 5, got '$cps'"
    ((cps <= n)) || die "U7S_TESTBED_CONTROL_PLANES=$cps needs at least $cps hosts, got $n"
    mkdir -p "$(dirname "$INVENTORY")"
    tmp=$INVENTORY.tmp.$$
    {
        printf '# Written by testbed/testbed.sh up (%s hosts, %s); not committed.\n' "$n" "$SUITE"
        printf 'u7s_cluster:\n  children:\n'
        printf '    control_plane:\n      hosts:\n'
        for ((i = 1; i <= cps; i++)); do
            inventory_host '        ' "$i"
        done
        if ((n > cps)); then
            printf '    workers:\n      hosts:\n'
            for ((i = cps + 1; i <= n; i++)); do
                inventory_host '        ' "$i"
            done
        else
            printf '    workers:\n      hosts: {}\n'
        fi
    } >"$tmp"
    mv "$tmp" "$INVENTORY"
}

# Start host i (a container on the test bed's network); it boots in the background.
start_host() {
    local i=$1 host name ip apt_cache
    host=host$i name=$CONTAINER_PREFIX$host ip=$(ip_of "$i")
    apt_cache=$CACHE_DIR/apt-archives/$SUITE/$host
    mkdir -p "$apt_cache"
    local cpu_cap=()
    [[ -z $CPUS ]] || cpu_cap=(--cpus "$CPUS")
    docker volume create --label "$LABEL" "$name-home" >/dev/null
    # Flags measured to work here (--privileged does not: no CAP_SYS_RESOURCE).
    # /home is a volume: the rootless engines keep their storage there,
    # and overlayfs on the container's own overlayfs would not work.
    docker run --detach --name "$name" --hostname "$host" \
        --label "$LABEL" --label "$LABEL_KEY.host=$host" \
        --network "$NETWORK" --ip "$ip" --network-alias "$host" \
        --cap-add ALL --cap-drop SYS_RESOURCE \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --security-opt systempaths=unconfined \
        --device-cgroup-rule 'a *:* rwm' --cgroupns host \
        --tmpfs /run:rw,nosuid,nodev,exec,mode=0755 \
        --tmpfs /run/lock:rw,nosuid,nodev,noexec,mode=1777 \
        --tmpfs /tmp:rw,nosuid,nodev,exec,mode=1777 \
        --stop-signal SIGRTMIN+3 "${cpu_cap[@]}" \
        --volume "$name-home:/home" \
        --volume "$apt_cache:/var/cache/apt/archives" \
        --volume "$KEY.pub:/etc/u7s-testbed/authorized_keys:ro" \
        "$HOST_IMAGE" >/dev/null
}

cmd_up() {
    need_root
    local n=${1:-${U7S_TESTBED_HOSTS:-2}} i host name ip
    if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n > 200)); then
        die "number of hosts must be 1..200, got '$n'"
    fi
    [[ -z $CPUS || $CPUS =~ ^[0-9]*\.?[0-9]+$ ]] || die "U7S_TESTBED_CPUS must be a number of CPUs such as 0.5, got '$CPUS'"
    [[ $SUBNET =~ ^[0-9]+\.[0-9]+\.[0-9]+\.0/24$ ]] || die "U7S_TESTBED_SUBNET must be an IPv4 x.y.z.0/24, got '$SUBNET'"
    local started=$SECONDS
    cmd_deps
    ensure_image
    log "removing any previous test bed"
    remove_docker_objects
    rm -f "$INVENTORY"
    ensure_keypair

    docker network create --driver bridge --subnet "$SUBNET" --gateway "$(net_prefix).1" \
        --label "$LABEL" "$NETWORK" >/dev/null
    for ((i = 1; i <= n; i++)); do
        start_host "$i"
    done
    # The hosts boot in parallel; check them one after the other.
    for ((i = 1; i <= n; i++)); do
        host=host$i name=$CONTAINER_PREFIX$host ip=$(ip_of "$i")
        wait_booted "$name" "$host"
        wait_ssh "$host" "$ip"
    done
    write_inventory "$n"
    log "test bed up in $((SECONDS - started))s: $n host(s), $SUITE, inventory $INVENTORY"
    for ((i = 1; i <= n; i++)); do
        printf '%-8s %-16s %s\n' "host$i" "$(ip_of "$i")" "${CONTAINER_PREFIX}host$i"
    done
    printf 'ssh: ssh -i %s admin@%s\n' "$KEY" "$(ip_of 1)"
}

# One more host beside a running test bed (a node to add to a cluster): host<i>,
# started and booted; the others are not touched. Prints its inventory entry
# (the inventory file is left as `up` wrote it: tests write their own).
cmd_add() {
    need_root
    local i=${1:-} host ip
    [[ $i =~ ^[1-9][0-9]*$ ]] && ((i <= 200)) || die "add: host number must be 1..200, got '$i'"
    host=host$i ip=$(ip_of "$i")
    docker network inspect "$NETWORK" >/dev/null 2>&1 || die "add: no test bed is up (run '$0 up' first)"
    if docker inspect "$CONTAINER_PREFIX$host" >/dev/null 2>&1; then
        die "add: $host is already up (${CONTAINER_PREFIX}$host)"
    fi
    ensure_image
    ensure_keypair
    start_host "$i"
    wait_booted "$CONTAINER_PREFIX$host" "$host"
    wait_ssh "$host" "$ip"
    log "$host up at $ip"
    inventory_host '' "$i"
}

# Docker objects go only if the engine can be reached (started if installed).
cmd_down() {
    need_root
    if command -v dockerd >/dev/null && start_engine; then
        remove_docker_objects
    else
        log "no outer docker engine here; nothing to remove from it"
    fi
    remove_tree "$STATE_DIR"
    rm -f "$INVENTORY"
    log "test bed down"
}

cmd_purge() {
    cmd_down
    if command -v docker >/dev/null && engine_up; then
        local repo refs=()
        # Host images first: they are children of the rootfs images.
        for repo in "$HOST_REPO" "$ROOTFS_REPO"; do
            mapfile -t refs < <(docker images --format '{{.Repository}}:{{.Tag}}' "$repo")
            ((${#refs[@]} == 0)) || docker rmi "${refs[@]}" >/dev/null
        done
    fi
    # Keep the log of a dockerd we started: it is still writing to it.
    if [[ -d $CACHE_DIR ]]; then
        find "$CACHE_DIR" -mindepth 1 -maxdepth 1 ! -name dockerd.log -exec rm -rf --one-file-system {} +
    fi
    log "test bed images and cache ($CACHE_DIR) removed"
}

cmd_status() {
    if ! command -v docker >/dev/null || ! engine_up; then
        echo "outer docker engine: not running"
        return 0
    fi
    local names name
    names=$(docker ps -a --filter "label=$LABEL" --format '{{.Names}}' | sort)
    [[ -n $names ]] || echo "no test-bed hosts"
    for name in $names; do
        printf '%-14s %-16s %-10s %s\n' "$name" \
            "$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NETWORK\").IPAddress}}" "$name" 2>/dev/null || echo -)" \
            "$(docker inspect -f '{{.State.Status}}' "$name")" \
            "$(docker inspect -f '{{.Config.Image}}' "$name")"
    done
    [[ -f $INVENTORY ]] && echo "inventory: $INVENTORY"
    return 0
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
    deps | image | up | add | down | purge)
        # One test bed per machine: serialize everything that changes it.
        take_lock "$LOCK_FILE" 1800
        "cmd_$cmd" "$@"
        ;;
    status) cmd_status ;;
    *)
        usage "$0"
        [[ $cmd == -h || $cmd == --help || $cmd == help ]] || exit 2
        ;;
    esac
}

main "$@"
