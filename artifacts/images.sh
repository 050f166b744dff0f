#!/usr/bin/env bash
# Offline container images for u7s.cluster.
#
# Assembles, without pulling anything from a registry, every image a Usernetes
# node needs, from the offline artifact bundle (artifacts/bundle.sh) and Debian
# packages:
#   - kubeadm's control-plane images under the exact refs `kubeadm config images
#     list` prints (kube-apiserver, kube-controller-manager, kube-scheduler,
#     kube-proxy, etcd, coredns, pause),
#   - flannel (ghcr.io/flannel-io/flannel:<FLANNEL_VERSION>) and the flannel CNI
#     plugin image (<LOCAL_REPO>/flannel-cni-plugin:<FLANNEL_CNI_VERSION>),
#   - <LOCAL_REPO>/busybox:<Debian busybox-static version> for test workloads,
#   - <LOCAL_REPO>/iperf3:<Debian iperf3 version> for the network benchmark
#     (bench/network.sh),
#   - <LOCAL_REPO>/node-base:<K8S_VERSION>, a kindest/node-compatible node image
#     (Debian, systemd, containerd) carrying all of the above in /kind/images.
# Every image is saved (docker save | zstd) into
# ${U7S_CACHE_DIR:-/var/cache/u7s}/images/<key>/ with manifest.json and
# SHA256SUMS; <key> changes with the bundle, this script, lib/u7s-shell.sh and
# artifacts/images/* (each image's Dockerfile is artifacts/images/<image>/Dockerfile).
#
# Usage: images.sh build | list | path | verify | prune
#   build   build or reuse the archive, load missing images into the local
#           docker engine; summary on stderr, archive dir on the last stdout line
#   list    image refs the archive holds (or would hold)
#   path    archive dir for the current bundle + sources
#   verify  checksums of the archive + the engine holds the archived image IDs
#   prune   delete archives of other keys and leftover work dirs
#
# Environment:
#   U7S_CACHE_DIR           cache root (default /var/cache/u7s); we use images/ below it
#   U7S_IMAGES_NICE         nice level of heavy steps (default 10)
#   U7S_IMAGES_ZSTD_LEVEL   zstd level of the archive (default 10)
#   U7S_DEBIAN_MIRROR       Debian archive (default http://deb.debian.org/debian)
#   U7S_VERSIONS_FILE       pins file, passed on to bundle.sh (default artifacts/versions.env)
#   U7S_KEEP_WORK=1         keep the work dir after a successful build
set -euo pipefail

ARTIFACTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF=$ARTIFACTS_DIR/$(basename "${BASH_SOURCE[0]}")
LIB=$(dirname "$ARTIFACTS_DIR")/lib/u7s-shell.sh
# log/die/need, step, timings_json, heavy, take_lock, short_hash, debian_arch,
# mounts, run_debootstrap, build_exit_trap, usage.
# shellcheck source-path=SCRIPTDIR/.. source=lib/u7s-shell.sh
. "$LIB" "images.sh: " "images.sh: error: "
SRC=$ARTIFACTS_DIR/images
BUNDLE_SH=$ARTIFACTS_DIR/bundle.sh
IMG_CACHE=$U7S_CACHE_ROOT/images
# shellcheck disable=SC2034 # heavy's nice level
NICE=${U7S_IMAGES_NICE:-10}
ZSTD_LEVEL=${U7S_IMAGES_ZSTD_LEVEL:-10}
DEBIAN_MIRROR=${U7S_DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
APT_ROOT=$IMG_CACHE/apt
DEBS=$IMG_CACHE/debs
MANIFEST_SCHEMA=1
# No buildx plugin here; the classic builder does all we need (ADD of a rootfs tar).
export DOCKER_BUILDKIT=0

# ---------------------------------------------------------------- inputs and key

load_settings() {
  # shellcheck disable=SC1091 # settings file, checked below
  . "$SRC/images.env"
  local k
  for k in IMAGES_REVISION DEBIAN_SUITE LOCAL_REPO; do
    [[ -n ${!k:-} ]] || die "$SRC/images.env does not set $k"
  done
  ARCH=$(debian_arch)
  BUNDLE_NAME=$("$BUNDLE_SH" name)
}

# Hash of everything that decides the images: the bundle (its name carries the
# pins' hash), this script, the shell library it sources, and every file under
# artifacts/images/, the Dockerfiles included (content, mode, symlink target).
# Debian's archive is not part of it: a rebuild with the same key may pick up
# newer point-release packages, recorded in manifest.json.
compute_key() {
  local h
  h=$({
    echo "schema $MANIFEST_SCHEMA bundle $BUNDLE_NAME arch $ARCH"
    sha256sum <"$SELF"
    sha256sum <"$LIB"
    cd "$SRC"
    find . \( -type f -o -type l \) -print | LC_ALL=C sort | while read -r f; do
      if [[ -L $f ]]; then echo "link $f $(readlink "$f")"; else echo "file $f $(stat -c %a "$f") $(sha256sum <"$f")"; fi
    done
  } | short_hash)
  KEY="u7s-images-${BUNDLE_NAME#u7s-k8s-bundle-}-$h"
  OUT=$IMG_CACHE/$KEY
}

# load_pins FILE: the bundle's pins (manifest.json .pins) as shell variables.
load_pins() {
  local line
  while IFS= read -r line; do
    [[ $line =~ ^([A-Z0-9_]+)=(.*)$ ]] || die "bad pin line in $1: $line"
    printf -v "${BASH_REMATCH[1]}" '%s' "${BASH_REMATCH[2]}"
  done < <(jq -r '.pins | to_entries[] | "\(.key)=\(.value)"' "$1")
  [[ -n ${K8S_VERSION:-} && -n ${FLANNEL_VERSION:-} && -n ${FLANNEL_CNI_VERSION:-} ]] ||
    die "$1 lacks K8S_VERSION/FLANNEL_VERSION/FLANNEL_CNI_VERSION pins"
}

# Docker tags allow [A-Za-z0-9_.-]: drop the epoch, map the rest ("+b9" -> "_b9").
debian_version_tag() {
  local v=${1#*:}
  echo "${v//[^A-Za-z0-9_.-]/_}"
}

# ---------------------------------------------------------------- Debian packages

# apt with a private state dir for DEBIAN_SUITE (the host runs another release).
apt_setup() {
  mkdir -p "$APT_ROOT"/etc/apt/{apt.conf.d,preferences.d,sources.list.d} "$APT_ROOT"/var/lib/apt/lists/partial \
    "$APT_ROOT"/var/lib/dpkg "$APT_ROOT"/var/cache/apt "$DEBS/partial"
  [[ -f $APT_ROOT/var/lib/dpkg/status ]] || : >"$APT_ROOT/var/lib/dpkg/status"
  cat >"$APT_ROOT/apt.conf" <<EOF
Dir "$APT_ROOT/";
Dir::State::status "$APT_ROOT/var/lib/dpkg/status";
Dir::Cache::archives "$DEBS/";
APT::Architecture "$ARCH";
APT::Install-Recommends "false";
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Debug::NoLocking "true";
EOF
  echo "deb [signed-by=$KEYRING] $DEBIAN_MIRROR $DEBIAN_SUITE main" >"$APT_ROOT/etc/apt/sources.list"
  export APT_CONFIG=$APT_ROOT/apt.conf
}

apt_update() {
  apt_setup
  apt-get -qq update >&2 || die "apt-get update for $DEBIAN_SUITE from $DEBIAN_MIRROR failed"
}

# Package names of a list file (comments and blank lines dropped).
list_packages() { sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$1"; }

candidate_version() {
  apt-cache show --no-all-versions "$1" 2>/dev/null | awk '/^Version:/ {print $2; exit}'
}

# resolve MODE PKG...: "name version arch" of what to unpack; MODE closure =
# with all dependencies (as apt would install them into an empty system),
# MODE only = just the named packages (data packages).
resolve() {
  local mode=$1 p
  shift
  if [[ $mode == closure ]]; then
    local sim parsed
    sim=$(apt-get -s -qq install "$@" 2>/dev/null) || die "apt-get cannot install $* from $DEBIAN_SUITE"
    # "Inst NAME (VERSION ORIGIN [ARCH])", with " [...]" after it when apt notes that the package
    # changes others (libc6, libgcc-s1): that form was once dropped, and with it libc6 from iperf3.
    parsed=$(sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) [^[]*\[\([^]]*\)\])\( \[[^]]*\]\)\{0,1\}$/\1 \2 \3/p' <<<"$sim")
    [[ $(grep -c '^Inst ' <<<"$sim") == $(grep -c . <<<"$parsed") ]] ||
      die "cannot read apt's plan for $*: $(grep '^Inst ' <<<"$sim" | head -n 40)"
    echo "$parsed"
  else
    for p in "$@"; do
      apt-cache show --no-all-versions "$p" | awk -v p="$p" '/^Version:/ {v=$2} /^Architecture:/ {a=$2} END {print p, v, a}'
    done
  fi
}

# fetch_debs < "name version arch" lines: download what the cache lacks, print the .deb paths.
fetch_debs() {
  local name ver arch f
  while read -r name ver arch; do
    f=$DEBS/${name}_${ver//:/%3a}_$arch.deb
    if [[ ! -s $f ]]; then
      (cd "$DEBS" && apt-get -qq download "$name=$ver" >&2) || die "cannot download $name=$ver"
    fi
    [[ -s $f ]] || die "$f missing after download"
    echo "$f"
  done
}

# ---------------------------------------------------------------- small root filesystems

# Merged-/usr skeleton with the users and name-service config of artifacts/images/common.
rootfs_skeleton() {
  local d=$1 l
  mkdir -p "$d"/usr/{bin,sbin,lib,lib64} "$d"/{etc,root,tmp,var/tmp,home/nonroot}
  for l in bin sbin lib lib64; do ln -s "usr/$l" "$d/$l"; done
  chmod 1777 "$d/tmp" "$d/var/tmp"
  chmod 0700 "$d/root"
  chown 65532:65532 "$d/home/nonroot"
  cp "$SRC"/common/etc/* "$d/etc/"
  chmod 0644 "$d"/etc/*
}

# Unpack .debs (paths on stdin) without running maintainer scripts.
unpack_debs() {
  local d=$1 f
  while read -r f; do heavy dpkg-deb -x "$f" "$d"; done
}

# What maintainer scripts would have produced, minus what images never read.
rootfs_finish() {
  local d=$1 p
  if [[ -d $d/usr/share/ca-certificates ]]; then
    # update-ca-certificates' result: all trusted certificates in one bundle.
    mkdir -p "$d/etc/ssl/certs"
    find "$d/usr/share/ca-certificates" -name '*.crt' -print0 | LC_ALL=C sort -z | xargs -0 cat >"$d/etc/ssl/certs/ca-certificates.crt"
  fi
  if [[ -x $d/usr/bin/busybox ]]; then
    # Applet links only where no real command of that name was unpacked (in
    # any bin dir: iproute2's /usr/bin/ip must not lose to an applet in sbin).
    while read -r p; do
      [[ $p == */* ]] || continue
      [[ -e $d/usr/bin/${p##*/} || -e $d/usr/sbin/${p##*/} || -L $d/$p ]] || ln -s /usr/bin/busybox "$d/$p"
    done < <("$d/usr/bin/busybox" --list-full)
  fi
  rm -rf "$d"/usr/share/{man,info,lintian,linda,bash-completion,initramfs-tools,locale} "$d"/usr/lib/*-linux-gnu/gconv
  # Keep the licences (copyright files), drop the rest of the docs.
  [[ ! -d $d/usr/share/doc ]] || find "$d/usr/share/doc" ! -type d ! -name copyright -delete
}

# tar_dir DIR OUT: a rootfs as a tar for the Dockerfile's ADD (OUT - = stdout).
tar_dir() {
  heavy tar -C "$1" --numeric-owner --sort=name --xattrs --xattrs-include='security.capability' -cf "$2" .
}

# small_rootfs NAME MODE LIST [extra dir to overlay]: WORK/rootfs/NAME.tar
small_rootfs() {
  local name=$1 mode=$2 list=$3 extra=${4:-} d pkgs
  d=$WORK/rootfs/$name
  mapfile -t pkgs < <(list_packages "$list")
  rootfs_skeleton "$d"
  resolve "$mode" "${pkgs[@]}" >"$WORK/rootfs/$name.debs"
  [[ -s $WORK/rootfs/$name.debs ]] || die "could not resolve the packages of $list"
  fetch_debs <"$WORK/rootfs/$name.debs" | unpack_debs "$d"
  if [[ -n $extra ]]; then cp -a "$extra/." "$d/"; fi
  rootfs_finish "$d"
  tar_dir "$d" "$WORK/rootfs/$name.tar"
  log "rootfs $name: $(wc -l <"$WORK/rootfs/$name.debs") packages, $(du -sh "$d" | cut -f1)"
}

# The kube-proxy/flannel images: iptables & co. behind the backend wrapper.
netfilter_overlay() {
  local d=$WORK/rootfs/netfilter-overlay c
  mkdir -p "$d/usr/sbin"
  install -m 0755 "$SRC/netfilter/usr/sbin/iptables-wrapper" "$d/usr/sbin/iptables-wrapper"
  for c in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -s iptables-wrapper "$d/usr/sbin/$c"
  done
  echo "$d"
}

build_small_rootfs() {
  local nf
  mkdir -p "$WORK/rootfs"
  nf=$(netfilter_overlay)
  small_rootfs static-base only "$SRC/packages/static-base.list"
  small_rootfs kube-proxy closure "$SRC/packages/kube-proxy.list" "$nf"
  small_rootfs flannel closure "$SRC/packages/flannel.list" "$nf"
  small_rootfs busybox closure "$SRC/packages/busybox.list"
  small_rootfs iperf3 closure "$SRC/packages/iperf3.list"
}

# ---------------------------------------------------------------- images

# docker_build REF CONTEXT [BUILD-ARG...]: build CONTEXT/Dockerfile as REF
# (labels say where it came from); BUILD-ARGs are NAME=VALUE for its ARGs.
docker_build() {
  local ref=$1 ctx=$2 old a args=()
  shift 2
  for a in "$@"; do args+=(--build-arg "$a"); done
  old=$(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null || true)
  # The classic builder warns about its deprecation on stderr: keep that for failures only.
  docker build -q --rm --force-rm -t "$ref" "${args[@]}" \
    --label "io.u7s.images.key=$KEY" --label "io.u7s.bundle=$BUNDLE_NAME" "$ctx" >/dev/null 2>"$ctx.build.log" ||
    { cat "$ctx.build.log" >&2; die "docker build of $ref failed (context $ctx)"; }
  [[ -z $old ]] || SUPERSEDED+=("$old")
  log "built $ref ($(docker image inspect -f '{{.Id}}' "$ref" | cut -c8-19))"
}

# context NAME DOCKERFILE FILE...: a fresh build context holding DOCKERFILE (one
# of artifacts/images/*/Dockerfile) and FILEs (hard links when possible).
context() {
  local c=$WORK/ctx/$1 f
  mkdir -p "$c"
  cp "$2" "$c/Dockerfile"
  shift 2
  for f in "$@"; do ln "$f" "$c/" 2>/dev/null || cp -a "$f" "$c/"; done
  echo "$c"
}

add_image() { # ROLE REF: remember an image for saving and the manifest
  IMAGES+=("$1 $2")
}

# Image ref -> the way it is built, for every image kubeadm names. Each
# Dockerfile is artifacts/images/<image>/Dockerfile and says what it expects
# in its context.
build_kubeadm_image() {
  local ref=$1 repo name c args=() b=$WORK/bundle r=$WORK/rootfs
  repo=${ref%:*}
  name=${repo#registry.k8s.io/}
  case $name in
    kube-apiserver | kube-controller-manager | kube-scheduler)
      c=$(context "$name" "$SRC/control-plane/Dockerfile" "$r/static-base.tar" "$b/bin/$name")
      args=("COMPONENT=$name")
      ;;
    kube-proxy) c=$(context kube-proxy "$SRC/kube-proxy/Dockerfile" "$r/kube-proxy.tar" "$b/bin/kube-proxy") ;;
    etcd) c=$(context etcd "$SRC/etcd/Dockerfile" "$r/static-base.tar" "$b/bin/etcd" "$b/bin/etcdctl" "$b/bin/etcdutl") ;;
    coredns/coredns) c=$(context coredns "$SRC/coredns/Dockerfile" "$r/static-base.tar" "$b/bin/coredns") ;;
    pause) c=$(context pause "$SRC/pause/Dockerfile" "$b/bin/pause") ;;
    *) die "kubeadm wants $ref, which this script does not know how to build" ;;
  esac
  docker_build "$ref" "$c" "${args[@]}"
  add_image kubeadm "$ref"
}

build_component_images() {
  local ref c b=$WORK/bundle r=$WORK/rootfs
  for ref in "${KUBEADM_IMAGES[@]}"; do build_kubeadm_image "$ref"; done

  c=$(context flannel "$SRC/flannel/Dockerfile" "$r/flannel.tar" "$b/bin/flanneld")
  docker_build "$FLANNEL_IMAGE" "$c"
  add_image flannel "$FLANNEL_IMAGE"

  c=$(context flannel-cni-plugin "$SRC/flannel-cni-plugin/Dockerfile" "$r/busybox.tar" "$b/cni/flannel")
  docker_build "$FLANNEL_CNI_IMAGE" "$c"
  add_image flannel "$FLANNEL_CNI_IMAGE"

  c=$(context busybox "$SRC/busybox/Dockerfile" "$r/busybox.tar")
  docker_build "$BUSYBOX_IMAGE" "$c"
  add_image test "$BUSYBOX_IMAGE"

  c=$(context iperf3 "$SRC/iperf3/Dockerfile" "$r/iperf3.tar")
  docker_build "$IPERF3_IMAGE" "$c"
  add_image test "$IPERF3_IMAGE"
}

# ---------------------------------------------------------------- node image

# debootstrap into $1 (Debian packages only; everything of ours goes into later layers).
node_debootstrap() {
  local d=$1 include
  include=$(list_packages "$SRC/packages/node-base.list" | paste -sd, -)
  mkdir -p "$IMG_CACHE/debootstrap-debs"
  run_debootstrap "$WORK/debootstrap.log" "$DEBIAN_SUITE" "$d" "$DEBIAN_MIRROR" \
    --arch="$ARCH" --include="$include" --keyring="$KEYRING" --cache-dir="$IMG_CACHE/debootstrap-debs"
}

# Generic clean-up of the debootstrap result: host leftovers, caches, docs.
node_rootfs_clean() {
  local d=$1
  # Nothing may stay mounted (debootstrap mounts /proc and /sys while it works).
  [[ -z $(mounts_below "$d") ]] || die "mounts left under $d"
  find "$d/dev" -mindepth 1 -delete
  rm -rf "$d"/var/lib/apt/lists/* "$d"/var/cache/apt/*.bin "$d"/var/cache/apt/archives/*.deb \
    "$d"/var/cache/debconf/*-old "$d"/var/lib/dpkg/*-old "$d"/tmp/* "$d"/var/tmp/*
  find "$d/var/log" -type f -delete
  rm -rf "$d"/usr/share/{man,info,lintian,linda}/*
  find "$d/usr/share/doc" ! -type d ! -name copyright -delete
  # Later installs stay slim too (as Debian's slim images do).
  printf '%s\n' "path-exclude /usr/share/man/*" "path-exclude /usr/share/info/*" \
    "path-exclude /usr/share/doc/*" "path-include /usr/share/doc/*/copyright" \
    >"$d/etc/dpkg/dpkg.cfg.d/u7s-slim"
  # Per-machine identity must not be baked in: the entrypoint fills machine-id,
  # the engine provides hostname/hosts/resolv.conf.
  : >"$d/etc/machine-id"
  rm -f "$d/var/lib/dbus/machine-id"
  echo localhost >"$d/etc/hostname"
  : >"$d/etc/resolv.conf"
}

# Cached Debian rootfs tarball, keyed by the package list and the code that makes it.
node_rootfs() {
  local h tarball d
  h=$({
    echo "$DEBIAN_SUITE $ARCH $DEBIAN_MIRROR"
    list_packages "$SRC/packages/node-base.list"
    declare -f node_debootstrap run_debootstrap node_rootfs_clean mounts_below
  } | short_hash 16)
  tarball=$IMG_CACHE/rootfs/node-base-$DEBIAN_SUITE-$ARCH-$h.tar.zst
  if [[ -s $tarball ]]; then
    log "reusing Debian rootfs $tarball"
  else
    d=$WORK/node-rootfs
    log "debootstrap $DEBIAN_SUITE ($(list_packages "$SRC/packages/node-base.list" | wc -l) packages listed)"
    node_debootstrap "$d"
    node_rootfs_clean "$d"
    mkdir -p "$IMG_CACHE/rootfs"
    tar_dir "$d" - | heavy zstd -q -T0 -3 -o "$tarball.tmp"
    mv "$tarball.tmp" "$tarball"
    rm -rf "$d"
    log "cached Debian rootfs $tarball ($(du -h "$tarball" | cut -f1))"
  fi
  NODE_ROOTFS_TARBALL=$tarball
}

# Our configuration layer: files from artifacts/images/node-base, rendered and
# with unit enable/mask symlinks.
node_config() {
  local d=$1 u line
  mkdir -p "$d"
  cp -a "$SRC/node-base/etc" "$SRC/node-base/usr" "$d/"
  find "$d" -type d -exec chmod 0755 {} +
  find "$d" -type f -exec chmod 0644 {} +
  chmod 0755 "$d"/usr/local/bin/*
  sed -i "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|" "$d/etc/containerd/config.toml"
  grep -q "sandbox_image = \"$PAUSE_IMAGE\"" "$d/etc/containerd/config.toml" || die "pause image not set in config.toml"
  mkdir -p "$d/etc/systemd/system/multi-user.target.wants" "$d/etc/kubernetes/manifests" "$d/etc/cni/net.d" "$d/kind"
  for u in kubelet.service u7s-import-images.service; do
    ln -s "/etc/systemd/system/$u" "$d/etc/systemd/system/multi-user.target.wants/$u"
  done
  ln -s /usr/lib/systemd/system/containerd.service "$d/etc/systemd/system/multi-user.target.wants/containerd.service"
  while read -r line; do
    u=${line%%#*}
    u=${u//[[:space:]]/}
    [[ -n $u ]] && ln -s /dev/null "$d/etc/systemd/system/$u"
  done <"$SRC/node-base/masked-units.list"
  echo "$K8S_VERSION" >"$d/kind/version"
}

# The bundle's node binaries at the paths kindest/node uses.
node_bin() {
  local d=$1 b=$WORK/bundle f
  mkdir -p "$d/usr/bin" "$d/usr/local/bin" "$d/opt/cni/bin"
  for f in kubelet kubeadm kubectl; do ln "$b/bin/$f" "$d/usr/bin/$f" 2>/dev/null || cp "$b/bin/$f" "$d/usr/bin/$f"; done
  ln "$b/bin/crictl" "$d/usr/local/bin/crictl" 2>/dev/null || cp "$b/bin/crictl" "$d/usr/local/bin/crictl"
  for f in "$b"/cni/*; do ln "$f" "$d/opt/cni/bin/" 2>/dev/null || cp "$f" "$d/opt/cni/bin/"; done
  chmod 0755 "$d"/usr/bin/* "$d"/usr/local/bin/* "$d"/opt/cni/bin/*
}

# /kind/images: docker save of each image the node runs, plus the index the import unit reads.
node_images() {
  local d=$1 role ref file entry
  mkdir -p "$d"
  echo "# file sha256 ref (read by /usr/local/bin/u7s-import-images)" >"$d/images.tsv"
  for entry in "${IMAGES[@]}"; do
    read -r role ref <<<"$entry"
    file=$(image_file "$ref").tar
    heavy docker save -o "$d/$file" "$ref"
    echo "$file $(sha256sum "$d/$file" | cut -d' ' -f1) $ref" >>"$d/images.tsv"
  done
  chmod 0644 "$d"/*
}

build_node_image() {
  local c=$WORK/ctx/node-base
  mkdir -p "$c"
  node_rootfs
  heavy zstd -q -d -c "$NODE_ROOTFS_TARBALL" >"$c/rootfs.tar"
  node_bin "$c/bin"
  node_config "$c/config"
  tar -C "$c/config" --owner=0 --group=0 --numeric-owner --sort=name -cf "$c/config.tar" .
  rm -rf "$c/config"
  node_images "$c/kind-images"
  cp "$SRC/node-base/Dockerfile" "$c/Dockerfile"
  docker_build "$NODE_IMAGE" "$c" "K8S_VERSION=$K8S_VERSION"
  add_image node "$NODE_IMAGE"
  # Debian versions that matter to users of the node, for the manifest.
  NODE_DEB_VERSIONS=$(tar -xOf "$c/rootfs.tar" ./var/lib/dpkg/status |
    awk '/^Package:/ {p=$2} /^Version:/ {v[p]=$2} END {
      n=split("systemd containerd runc iptables nftables libc6", want, " ")
      for (i=1; i<=n; i++) printf "%s\t%s\n", want[i], v[want[i]] }' |
    jq -R -n '[inputs | split("\t") | {(.[0]): .[1]}] | add')
}

# ---------------------------------------------------------------- steps

image_file() { # ref -> file stem: last path element and tag
  local ref=$1 repo tag
  repo=${ref%:*} tag=${ref##*:}
  echo "${repo##*/}_$tag"
}

unpack_bundle() {
  mkdir -p "$WORK/bundle"
  heavy zstd -q -d -c "$BUNDLE/binaries.tar.zst" | tar -x -C "$WORK/bundle"
}

# kubeadm itself says which images it deploys; the bundle recorded the same list.
check_kubeadm_images() {
  mapfile -t KUBEADM_IMAGES < <("$WORK/bundle/bin/kubeadm" config images list --kubernetes-version "$K8S_VERSION")
  ((${#KUBEADM_IMAGES[@]} > 0)) || die "kubeadm config images list printed nothing"
  diff <(printf '%s\n' "${KUBEADM_IMAGES[@]}") <(jq -r '.kubeadm_images[]' "$BUNDLE/manifest.json") >&2 ||
    die "kubeadm's image list differs from the bundle manifest's"
  PAUSE_IMAGE=$(printf '%s\n' "${KUBEADM_IMAGES[@]}" | grep -m1 '^registry.k8s.io/pause:') || die "kubeadm lists no pause image"
}

set_local_refs() {
  FLANNEL_IMAGE=ghcr.io/flannel-io/flannel:$FLANNEL_VERSION
  FLANNEL_CNI_IMAGE=$LOCAL_REPO/flannel-cni-plugin:$FLANNEL_CNI_VERSION
  BUSYBOX_VERSION=$(candidate_version busybox-static)
  [[ -n $BUSYBOX_VERSION ]] || die "busybox-static not found in $DEBIAN_SUITE"
  BUSYBOX_IMAGE=$LOCAL_REPO/busybox:$(debian_version_tag "$BUSYBOX_VERSION")
  IPERF3_VERSION=$(candidate_version iperf3)
  [[ -n $IPERF3_VERSION ]] || die "iperf3 not found in $DEBIAN_SUITE"
  IPERF3_IMAGE=$LOCAL_REPO/iperf3:$(debian_version_tag "$IPERF3_VERSION")
  NODE_IMAGE=$LOCAL_REPO/node-base:$K8S_VERSION
}

# docker save | zstd of every image into WORK/out, one file each.
save_images() {
  local o=$WORK/out role ref file entry
  mkdir -p "$o"
  : >"$WORK/images.json"
  for entry in "${IMAGES[@]}"; do
    read -r role ref <<<"$entry"
    file=$(image_file "$ref").tar.zst
    docker save "$ref" | heavy zstd -q -T0 "-$ZSTD_LEVEL" --long=27 -o "$o/$file"
    jq -n --arg role "$role" --arg ref "$ref" --arg id "$(docker image inspect -f '{{.Id}}' "$ref")" --arg file "$file" \
      --argjson size "$(docker image inspect -f '{{.Size}}' "$ref")" --argjson fsize "$(stat -c %s "$o/$file")" \
      '{ref: $ref, role: $role, id: $id, file: $file, image_size: $size, file_size: $fsize}' >>"$WORK/images.json"
  done
}

write_manifest() {
  local o=$WORK/out
  jq -n --argjson schema "$MANIFEST_SCHEMA" --arg key "$KEY" --arg bundle "$BUNDLE_NAME" --arg arch "$ARCH" \
    --arg k8s "$K8S_VERSION" --arg suite "$DEBIAN_SUITE" --arg mirror "$DEBIAN_MIRROR" \
    --arg busybox "$BUSYBOX_VERSION" --arg iperf3 "$IPERF3_VERSION" --argjson node_debs "$NODE_DEB_VERSIONS" \
    --arg zstd "zstd -$ZSTD_LEVEL --long=27" --arg built "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --slurpfile images "$WORK/images.json" --argjson timings "$(timings_json)" \
    '{schema: $schema, key: $key, bundle: $bundle, arch: $arch, k8s_version: $k8s,
      debian: ({suite: $suite, mirror: $mirror, "busybox-static": $busybox, iperf3: $iperf3} + $node_debs),
      compression: $zstd, load: "zstd -dc FILE | docker load",
      built_at: $built, images: $images,
      build_seconds: $timings}' \
    >"$o/manifest.json"
  (cd "$o" && sha256sum -- *.tar.zst manifest.json >SHA256SUMS)
}

build_all() {
  need debootstrap docker dpkg-deb apt-get jq zstd tar
  mkdir -p "$IMG_CACHE/work"
  WORK=$(mktemp -d "$IMG_CACHE/work/$KEY.XXXXXX")
  # Never leave a mount behind (an interrupted debootstrap mounts proc/sys in its target).
  trap build_exit_trap EXIT
  TIMINGS=() IMAGES=() SUPERSEDED=()
  local t0=$SECONDS
  log "building $KEY in $WORK"
  step unpack-bundle unpack_bundle
  step kubeadm-images check_kubeadm_images
  step apt-update apt_update
  set_local_refs
  step small-rootfs build_small_rootfs
  step component-images build_component_images
  step node-image build_node_image
  step save save_images
  TIMINGS+=("total	$((SECONDS - t0))")
  write_manifest
  rm -rf "$OUT"
  mv "$WORK/out" "$OUT"
  remove_superseded
  [[ ${U7S_KEEP_WORK:-0} == 1 ]] || rm -rf "$WORK"
  trap - EXIT
  log "built $KEY in $((SECONDS - t0))s"
}

# Images our earlier builds left untagged; in-use ones stay (rmi without -f).
remove_superseded() {
  local id
  for id in "${SUPERSEDED[@]}"; do
    [[ -z $(docker image inspect -f '{{join .RepoTags ","}}' "$id" 2>/dev/null) ]] || continue
    if docker rmi "$id" >/dev/null 2>&1; then log "removed superseded image ${id:7:12}"; fi
  done
}

# ---------------------------------------------------------------- archive checks

# Quick check (warm path): manifest for this key, every file present with its size.
archive_ok() {
  local dir=$1 file size
  [[ -f $dir/manifest.json && -f $dir/SHA256SUMS ]] || return 1
  jq -e --arg key "$KEY" --argjson s "$MANIFEST_SCHEMA" '.key == $key and .schema == $s' "$dir/manifest.json" >/dev/null || return 1
  while read -r file size; do
    [[ $(stat -c %s "$dir/$file" 2>/dev/null) == "$size" ]] || { log "$dir/$file missing or truncated"; return 1; }
  done < <(jq -r '.images[] | "\(.file) \(.file_size)"' "$dir/manifest.json")
}

# Load into the local engine every archived image it lacks (or holds under another ID).
ensure_loaded() {
  local dir=$1 ref id file have loaded=0
  while read -r ref id file; do
    have=$(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null || true)
    [[ $have != "$id" ]] || continue
    log "loading $ref from $file"
    heavy zstd -q -d -c "$dir/$file" | docker load -q >/dev/null || die "docker load of $dir/$file failed"
    [[ $(docker image inspect -f '{{.Id}}' "$ref") == "$id" ]] || die "$ref loaded from $file has another ID than the manifest's $id"
    loaded=$((loaded + 1))
  done < <(jq -r '.images[] | "\(.ref) \(.id) \(.file)"' "$dir/manifest.json")
  log "engine holds all $(jq '.images | length' "$dir/manifest.json") images ($loaded loaded now)"
}

summary() {
  local dir=$1
  {
    printf '%-58s %-12s %9s %9s\n' IMAGE ID SIZE ARCHIVE
    jq -r '.images[] | [.ref, .id[7:19], (.image_size / 1048576 | floor | tostring) + "M", (.file_size / 1048576 | floor | tostring) + "M"] | @tsv' \
      "$dir/manifest.json" | while IFS=$'\t' read -r r i s f; do printf '%-58s %-12s %9s %9s\n' "$r" "$i" "$s" "$f"; done
    echo "archive: $(du -sh "$dir" | cut -f1) in $dir (build took $(jq '.build_seconds.total' "$dir/manifest.json")s)"
  } >&2
}

# ---------------------------------------------------------------- subcommands

cmd_build() {
  need docker jq zstd flock
  take_lock "$IMG_CACHE/.build.lock"
  BUNDLE=$("$BUNDLE_SH" build | tail -n1)
  [[ $(basename "$BUNDLE") == "$BUNDLE_NAME" && -f $BUNDLE/manifest.json ]] || die "bundle.sh build gave $BUNDLE, expected $BUNDLE_NAME"
  load_pins "$BUNDLE/manifest.json"
  if archive_ok "$OUT"; then
    log "cached archive matches: $OUT"
  else
    build_all
  fi
  ensure_loaded "$OUT"
  summary "$OUT"
  echo "$OUT"
}

cmd_list() {
  if archive_ok "$OUT" 2>/dev/null; then
    jq -r '.images[].ref' "$OUT/manifest.json"
    return
  fi
  # Not built yet: what a build would produce (bundle manifest if present, else the pins).
  local bundle manifest
  bundle=$("$BUNDLE_SH" path)
  manifest=$bundle/manifest.json
  if [[ -f $manifest ]]; then
    load_pins "$manifest"
    mapfile -t KUBEADM_IMAGES < <(jq -r '.kubeadm_images[]' "$manifest")
  else
    # shellcheck disable=SC1090 # the pins file (read only), as bundle.sh finds it
    . "${U7S_VERSIONS_FILE:-$ARTIFACTS_DIR/versions.env}"
    KUBEADM_IMAGES=()
    local c
    for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do KUBEADM_IMAGES+=("registry.k8s.io/$c:$K8S_VERSION"); done
    KUBEADM_IMAGES+=("registry.k8s.io/coredns/coredns:$COREDNS_VERSION" "registry.k8s.io/pause:$PAUSE_VERSION" "registry.k8s.io/etcd:$ETCD_IMAGE_TAG")
  fi
  apt_setup
  [[ -n $(candidate_version busybox-static) && -n $(candidate_version iperf3) ]] || apt_update
  set_local_refs
  printf '%s\n' "${KUBEADM_IMAGES[@]}" "$FLANNEL_IMAGE" "$FLANNEL_CNI_IMAGE" "$BUSYBOX_IMAGE" "$IPERF3_IMAGE" \
    "$NODE_IMAGE"
}

cmd_verify() {
  local dir=${1:-$OUT}
  archive_ok "$dir" || die "no complete archive for $KEY at $dir (run: $0 build)"
  (cd "$dir" && sha256sum --quiet --strict -c SHA256SUMS) || die "checksum mismatch in $dir"
  echo "checksums: ok ($(wc -l <"$dir/SHA256SUMS") files)"
  local ref id bad=0
  while read -r ref id; do
    if [[ $(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null) == "$id" ]]; then
      echo "ok   $ref ${id:7:12}"
    else
      echo "FAIL $ref: engine lacks ${id:7:12}"
      bad=1
    fi
  done < <(jq -r '.images[] | "\(.ref) \(.id)"' "$dir/manifest.json")
  ((bad == 0)) || die "engine does not hold every archived image (run: $0 build)"
  echo "verify: ok $dir"
}

# Remove archives of other keys (older pins or sources) and stale work dirs;
# the engine's images and the Debian caches stay.
cmd_prune() {
  local d n=0
  take_lock "$IMG_CACHE/.build.lock"
  for d in "$IMG_CACHE"/u7s-images-* "$IMG_CACHE"/work/*; do
    [[ -e $d && $d != "$OUT" ]] || continue
    if [[ -n $(mounts_below "$d") ]]; then log "skipping $d: something is mounted below it"; continue; fi
    rm -rf "$d"
    log "removed $d"
    n=$((n + 1))
  done
  log "pruned $n, kept $OUT"
}

CMD=${1:-}
case $CMD in
  build) load_settings; compute_key; cmd_build ;;
  list) load_settings; compute_key; cmd_list ;;
  path) load_settings; compute_key; echo "$OUT" ;;
  verify) load_settings; compute_key; cmd_verify "${2:-}" ;;
  prune) load_settings; compute_key; mkdir -p "$IMG_CACHE"; cmd_prune ;;
  -h | --help | help) usage "$0" ;;
  *) die "usage: $0 build | list | path | verify | prune" ;;
esac
