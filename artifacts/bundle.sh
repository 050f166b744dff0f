#!/usr/bin/env bash
# Offline Kubernetes artifact bundle for u7s.cluster.
#
# Builds, from the Go module proxy only (no container registry, no GitHub
# release downloads), the binaries a kindest/node image carries and kubeadm
# needs, at the versions pinned in artifacts/versions.env. The result is a
# directory holding binaries.tar.zst (bin/*, cni/*), manifest.json and
# SHA256SUMS, cached under ${U7S_CACHE_DIR:-/var/cache/u7s}/bundles/<name>/
# where <name> carries a hash of versions.env.
#
# Usage: bundle.sh build | path | name | verify [DIR]
#
# Environment:
#   U7S_CACHE_DIR              cache root (default /var/cache/u7s): bundles/, go/ (GOMODCACHE, GOCACHE), work/
#   U7S_SHARED_ARTIFACTS_DIR   prebuilt bundles to reuse (default <repo>/../shared/artifacts)
#   U7S_VERSIONS_FILE          pins file (default artifacts/versions.env)
#   U7S_BUILD_NICE             nice level for compilers/compressor (default 19)
#   U7S_ZSTD_LEVEL             zstd level (default 19)
#   U7S_KEEP_WORK=1            keep the build work dir (wrapper modules, raw binaries)
#   GOPROXY, GOTOOLCHAIN       honoured; GOTOOLCHAIN defaults to "local" so a too-old Go fails loudly
set -euo pipefail

ARTIFACTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$ARTIFACTS_DIR")
# log/die/need, step, timings_json, heavy, take_lock, debian_arch, build_exit_trap, usage.
# shellcheck source-path=SCRIPTDIR/.. source=lib/u7s-shell.sh
. "$REPO_ROOT/lib/u7s-shell.sh" "bundle.sh: " "bundle.sh: error: "
VERSIONS_FILE=${U7S_VERSIONS_FILE:-$ARTIFACTS_DIR/versions.env}
CACHE_DIR=$U7S_CACHE_ROOT
SHARED_DIR=${U7S_SHARED_ARTIFACTS_DIR:-$REPO_ROOT/../shared/artifacts}
# shellcheck disable=SC2034 # heavy's nice level
NICE=${U7S_BUILD_NICE:-19}
ZSTD_LEVEL=${U7S_ZSTD_LEVEL:-19}
MANIFEST_SCHEMA=2
ARCHIVE=binaries.tar.zst

# ---------------------------------------------------------------- pins / naming

REQUIRED_PINS=(BUNDLE_REVISION K8S_VERSION K8S_STAGING_VERSION K8S_BUILD_DATE ETCD_IMAGE_TAG ETCD_VERSION
  COREDNS_VERSION PAUSE_VERSION FLANNEL_VERSION CNI_PLUGINS_VERSION
  FLANNEL_CNI_MODULE FLANNEL_CNI_VERSION FLANNEL_CNI_PACKAGE CRI_TOOLS_VERSION)

load_pins() {
  [[ -r $VERSIONS_FILE ]] || die "pins file $VERSIONS_FILE not readable"
  # shellcheck disable=SC1090
  . "$VERSIONS_FILE"
  local k
  for k in "${REQUIRED_PINS[@]}"; do
    [[ -n ${!k:-} ]] || die "$VERSIONS_FILE does not set $k"
  done
  [[ $K8S_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "K8S_VERSION=$K8S_VERSION is not vMAJOR.MINOR.PATCH"
  [[ $K8S_STAGING_VERSION == "v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}" ]] ||
    die "K8S_STAGING_VERSION=$K8S_STAGING_VERSION does not match K8S_VERSION=$K8S_VERSION (want v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]})"
  [[ $K8S_BUILD_DATE =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] ||
    die "K8S_BUILD_DATE=$K8S_BUILD_DATE is not YYYY-MM-DDThh:mm:ssZ"
  PINS_SHA256=$(sha256sum "$VERSIONS_FILE" | cut -d' ' -f1)
  # Native builds only: kubeadm is run during the build and pause needs a native gcc.
  ARCH=$(debian_arch)
  BUNDLE_NAME="u7s-k8s-bundle-${K8S_VERSION}-linux-${ARCH}-${PINS_SHA256:0:8}"
  BUNDLE_PATH="$CACHE_DIR/bundles/$BUNDLE_NAME"
  # The pins as JSON, in file order; compared verbatim against a bundle's manifest.
  PINS_JSON=$(grep -E '^[A-Z0-9_]+=' "$VERSIONS_FILE" | cut -d= -f1 |
    while read -r k; do printf '%s\t%s\n' "$k" "${!k}"; done |
    jq -Rn '[inputs | split("\t") | {(.[0]): .[1]}] | add')
}

# Image list kubeadm must print for K8S_VERSION, derived from the pins.
expected_images() {
  local r=registry.k8s.io c
  for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do echo "$r/$c:$K8S_VERSION"; done
  echo "$r/coredns/coredns:$COREDNS_VERSION"
  echo "$r/pause:$PAUSE_VERSION"
  echo "$r/etcd:$ETCD_IMAGE_TAG"
}

# ---------------------------------------------------------------- checking a bundle

# bundle_ok DIR: checksums verify and the manifest was built from exactly these pins.
# Prints the reason to stderr when not.
bundle_ok() { build_ok "$1" "$BUNDLE_NAME" "$VERSIONS_FILE"; }

# ---------------------------------------------------------------- building

setup_go_env() {
  # -mod=mod lets `go build` complete the wrapper go.mod/go.sum.
  go_build_env -mod=mod
}

# moddir MOD@VER: fetch a module from the proxy, print its source dir in the module cache.
moddir() {
  local j
  j=$(cd "$WORK" && go mod download -json "$1") ||
    die "cannot fetch $1 from the Go module proxy ($(go env GOPROXY)): $(jq -r '.Error // empty' <<<"$j" 2>/dev/null)"
  jq -er .Dir <<<"$j"
}

# make_wrapper NAME SIBLING_VERSION MOD@VER...: print the dir of a throwaway main module requiring MOD@VER.
# Upstream go.mod files replace sibling modules with local paths (k8s.io/kubernetes ->
# ./staging/src/k8s.io/*, etcd -> ../api) that are not in the proxy zips, and
# `go install m@v` refuses any replace. So each locally-replaced sibling that the
# module requires is pointed at its own proxy release SIBLING_VERSION; remote
# replaces are kept as upstream has them.
make_wrapper() {
  local name=$1 sib=$2 dir=$WORK/mod-$1 mv gomod js go_ver=1.21
  shift 2
  mkdir -p "$dir"
  local requires=() replaces=() godebugs=()
  for mv in "$@"; do
    moddir "$mv" >/dev/null
    gomod=$GOMODCACHE/cache/download/${mv%@*}/@v/${mv#*@}.mod
    [[ -f $gomod ]] || gomod=$(cd "$WORK" && go mod download -json "$mv" | jq -er .GoMod)
    js=$(go mod edit -json "$gomod")
    requires+=("require ${mv%@*} ${mv#*@}")
    mapfile -t -O "${#replaces[@]}" replaces < <(jq -r --arg sib "$sib" '
      ([.Require[]?.Path]) as $req | (.Replace // [])[]
      | if (.New.Path | startswith(".")) then
          (.Old.Path as $p | if ($req | index($p)) != null then "replace \($p) => \($p) \($sib)" else empty end)
        else "replace \(.Old.Path)\(if .Old.Version then " " + .Old.Version else "" end) => \(.New.Path) \(.New.Version)" end' <<<"$js")
    mapfile -t -O "${#godebugs[@]}" godebugs < <(jq -r '(.Godebug // [])[] | "godebug \(.Key)=\(.Value)"' <<<"$js")
    # The wrapper needs the highest go directive of what it wraps.
    go_ver=$(printf '%s\n%s\n' "$go_ver" "$(jq -r .Go <<<"$js")" | sort -V | tail -n1)
  done
  {
    echo "// Generated by artifacts/bundle.sh; throwaway build module, not committed."
    echo "module u7s.local/build/$name"
    echo "go $go_ver"
    printf '%s\n' "${godebugs[@]}" | sort -u | sed '/^$/d'
    printf '%s\n' "${requires[@]}"
    printf '%s\n' "${replaces[@]}" | sort -u | sed '/^$/d'
  } >"$dir/go.mod"
  echo "$dir"
}

# gobuild WRAPPER OUT LDFLAGS TAGS PKG...
# -buildid= : the Go build ID hashes cache-local action IDs, so without it the
# same pins built under another U7S_CACHE_DIR differ in those bytes alone.
gobuild() {
  local dir=$1 out=$2 ldflags=$3 tags=$4
  shift 4
  (cd "$dir" && heavy go build -tags "$tags" -ldflags "-s -w -buildid= $ldflags" -o "$out" "$@")
}

# add_file NAME RELPATH COMPONENT VERSION VERSION_MATCH VERSION_ARGS: record a raw binary for the bundle.
add_file() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$WORK/files.tsv"; }

build_kubeadm() {
  K8S_WRAP=$(make_wrapper kubernetes "$K8S_STAGING_VERSION" "k8s.io/kubernetes@$K8S_VERSION")
  K8S_SRC=$(moddir "k8s.io/kubernetes@$K8S_VERSION")
  # Same variables hack/lib/version.sh sets. The proxy zip has no git metadata:
  # tree state "archive", build date pinned (proxies disagree on a version's
  # .info Time), gitCommit keeps its "$Format:%H$" default (not every proxy
  # reports the commit). The same pins must give the same bytes.
  local minor ld="" pkg
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=archive -X $pkg.buildDate=$K8S_BUILD_DATE"
  done
  K8S_LDFLAGS=$ld
  # Tags as hack/lib/golang.sh uses for release (non-debug) builds.
  K8S_TAGS=selinux,notest,grpcnotrace
  gobuild "$K8S_WRAP" "$WORK/bin/kubeadm" "$K8S_LDFLAGS" "$K8S_TAGS" k8s.io/kubernetes/cmd/kubeadm
  add_file kubeadm bin/kubeadm kubernetes "$K8S_VERSION" "$K8S_VERSION" "version -o short"

  # The etcd/coredns/pause pins must be what this kubeadm deploys.
  "$WORK/bin/kubeadm" config images list --kubernetes-version "$K8S_VERSION" >"$WORK/kubeadm-images.txt" ||
    die "kubeadm config images list failed"
  if ! diff -u <(expected_images) "$WORK/kubeadm-images.txt" >&2; then
    die "kubeadm $K8S_VERSION wants other images than $VERSIONS_FILE pins (diff above: - pins, + kubeadm); fix ETCD_*/COREDNS_VERSION/PAUSE_VERSION"
  fi
}

build_k8s_binary() {
  local name=$1 args=${2:---version}
  gobuild "$K8S_WRAP" "$WORK/bin/$name" "$K8S_LDFLAGS" "$K8S_TAGS" "k8s.io/kubernetes/cmd/$name"
  add_file "$name" "bin/$name" kubernetes "$K8S_VERSION" "$K8S_VERSION" "$args"
}

build_pause() {
  need "${CC:-gcc}"
  local src=$K8S_SRC/build/pause/linux/pause.c
  [[ -f $src ]] || die "$src missing from the k8s.io/kubernetes@$K8S_VERSION module"
  # Flags as build/pause/Makefile; the git-describe suffix becomes "u7s".
  heavy "${CC:-gcc}" -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-u7s" -o "$WORK/bin/pause" "$src" ||
    die "static link of pause failed (Debian: apt-get install gcc libc6-dev)"
  strip "$WORK/bin/pause"
  add_file pause bin/pause pause "$PAUSE_VERSION" "v$PAUSE_VERSION" "-v"
}

build_etcd() {
  local w m ld=""
  w=$(make_wrapper etcd "$ETCD_VERSION" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
    "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdutl/v3@$ETCD_VERSION")
  for m in server:etcd etcdctl:etcdctl etcdutl:etcdutl; do
    gobuild "$w" "$WORK/bin/${m#*:}" "$ld" "" "go.etcd.io/etcd/${m%:*}/v3"
  done
  add_file etcd bin/etcd etcd "$ETCD_VERSION" "${ETCD_VERSION#v}" "--version"
  add_file etcdctl bin/etcdctl etcd "$ETCD_VERSION" "${ETCD_VERSION#v}" "version"
  add_file etcdutl bin/etcdutl etcd "$ETCD_VERSION" "${ETCD_VERSION#v}" "version"
}

build_coredns() {
  local w
  w=$(make_wrapper coredns "" "github.com/coredns/coredns@$COREDNS_VERSION")
  gobuild "$w" "$WORK/bin/coredns" "" "" github.com/coredns/coredns
  add_file coredns bin/coredns coredns "$COREDNS_VERSION" "${COREDNS_VERSION#v}" "-version"
}

build_flanneld() {
  local w cgo=0 ld="-X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL_VERSION"
  w=$(make_wrapper flannel "" "github.com/flannel-io/flannel@$FLANNEL_VERSION")
  # The amd64 udp backend is C (pkg/backend/udp/proxy_amd64.c): like flannel's
  # Makefile, use cgo there and link fully static; netgo/osusergo keep glibc's
  # NSS (which a static binary cannot dlopen) out of name lookups.
  if [[ $ARCH == amd64 ]]; then
    need "${CC:-gcc}"
    cgo=1 ld+=" -linkmode external -extldflags -static"
  fi
  CGO_ENABLED=$cgo gobuild "$w" "$WORK/bin/flanneld" "$ld" netgo,osusergo github.com/flannel-io/flannel
  add_file flanneld bin/flanneld flannel "$FLANNEL_VERSION" "$FLANNEL_VERSION" "--version"
}

build_cni_plugins() {
  local w src d pkgs=() names=() n
  w=$(make_wrapper cni-plugins "" "github.com/containernetworking/plugins@$CNI_PLUGINS_VERSION")
  src=$(moddir "github.com/containernetworking/plugins@$CNI_PLUGINS_VERSION")
  # Every Linux plugin of the release tarball: plugins/{main,ipam,meta}/* minus main/windows.
  for d in "$src"/plugins/{main,ipam,meta}/*/; do
    d=${d%/}
    [[ ${d##*/} == windows ]] && continue
    pkgs+=("github.com/containernetworking/plugins/${d#"$src"/}")
    names+=("${d##*/}")
  done
  ((${#pkgs[@]} > 0)) || die "no CNI plugins found in $src"
  mkdir -p "$WORK/cni"
  # One go build for all: shared packages compile once, and -o DIR names binaries after their package dir.
  gobuild "$w" "$WORK/cni/" "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" "" \
    "${pkgs[@]}"
  for n in "${names[@]}"; do
    # Without CNI_COMMAND a plugin prints "CNI <name> plugin <version>".
    add_file "$n" "cni/$n" cni-plugins "$CNI_PLUGINS_VERSION" "$CNI_PLUGINS_VERSION" ""
  done
}

build_flannel_cni() {
  local w
  w=$(make_wrapper flannel-cni "" "$FLANNEL_CNI_MODULE@$FLANNEL_CNI_VERSION")
  gobuild "$w" "$WORK/cni/flannel" "-X $FLANNEL_CNI_MODULE/pkg/utils/buildversion.BuildVersion=$FLANNEL_CNI_VERSION" "" \
    "$FLANNEL_CNI_MODULE/$FLANNEL_CNI_PACKAGE"
  add_file flannel cni/flannel flannel-cni "$FLANNEL_CNI_VERSION" "$FLANNEL_CNI_VERSION" ""
}

build_crictl() {
  local w
  w=$(make_wrapper cri-tools "" "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION")
  gobuild "$w" "$WORK/bin/crictl" "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" "" sigs.k8s.io/cri-tools/cmd/crictl
  add_file crictl bin/crictl cri-tools "$CRI_TOOLS_VERSION" "$CRI_TOOLS_VERSION" "--version"
}

# assemble OUTDIR: pack every recorded binary into one tar.zst, write manifest.json.
# One archive rather than per-file .zst: the Kubernetes binaries share most of
# their code, and zstd --long=27 (128 MiB window, the default limit of any zstd
# decoder, so no flag is needed to unpack) finds it across files: 113 MiB vs
# 169 MiB per-file at the same level. Every Usernetes node image carries all of
# them anyway; one binary still comes out with `zstd -dc ... | tar -x bin/NAME`.
assemble() {
  local out=$1
  pack_files "$out" "$K8S_BUILD_DATE" --long=27
  jq -n --arg name "$BUNDLE_NAME" --arg sha "$PINS_SHA256" --argjson pins "$PINS_JSON" --argjson schema "$MANIFEST_SCHEMA" \
    --arg arch "$ARCH" --arg gov "$(go env GOVERSION)" --arg built "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --arg archive "$ARCHIVE" --argjson asize "$(stat -c %s "$out/$ARCHIVE")" --arg zlevel "$ZSTD_LEVEL" \
    --rawfile images "$WORK/kubeadm-images.txt" --argjson timings "$(timings_json)" --slurpfile files "$WORK/files.json" \
    '{schema: $schema, name: $name, os: "linux", arch: $arch, pins_sha256: $sha, pins: $pins,
      archive: {path: $archive, format: "tar", compression: "zstd -\($zlevel) --long=27", size: $asize},
      go_version: $gov, built_at: $built,
      kubeadm_images: ($images | split("\n") | map(select(. != ""))),
      build_seconds: $timings,
      files: $files}' >"$out/manifest.json"
}

do_build() {
  need go jq zstd tar sha256sum flock strip
  setup_go_env
  WORK=$(mktemp -d "$CACHE_DIR/work/$BUNDLE_NAME.XXXXXX")
  mkdir -p "$WORK/bin"
  TIMINGS=()
  CURRENT_STEP=setup
  trap build_exit_trap EXIT
  log "building $BUNDLE_NAME in $WORK ($(go env GOVERSION), GOMODCACHE=$GOMODCACHE)"
  local t0=$SECONDS n
  step kubeadm build_kubeadm
  for n in kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
    step "$n" build_k8s_binary "$n"
  done
  step kubectl build_k8s_binary kubectl "version --client"
  step pause build_pause
  step etcd build_etcd
  step coredns build_coredns
  step flanneld build_flanneld
  step cni-plugins build_cni_plugins
  step flannel-cni build_flannel_cni
  step crictl build_crictl
  step compress assemble "$WORK/out"
  finish_build "$WORK/out" "$BUNDLE_PATH" "$BUNDLE_NAME" bundle_ok "$t0"
}

# ---------------------------------------------------------------- subcommands

cmd_build() {
  # One builder per bundle at a time; a second caller waits, then finds it cached.
  cached_build "$BUNDLE_PATH" "$BUNDLE_NAME" bundle_ok && return
  local shared=$SHARED_DIR/$BUNDLE_NAME
  if [[ -d $shared ]]; then
    if bundle_ok "$shared"; then
      # Copied, not referenced, so `bundle.sh path` names a bundle that exists
      # and the cache survives shared/ being replaced.
      log "reusing prebuilt bundle $shared"
      local tmp
      tmp=$(mktemp -d "$CACHE_DIR/bundles/.$BUNDLE_NAME.XXXXXX")
      cp -a "$shared/." "$tmp/"
      bundle_ok "$tmp" || die "copy of $shared does not verify"
      rm -rf "$BUNDLE_PATH"
      mv "$tmp" "$BUNDLE_PATH"
      echo "$BUNDLE_PATH"
      return
    fi
    log "ignoring $shared: it does not verify against the pins"
  fi
  do_build
  echo "$BUNDLE_PATH"
}

cmd_verify() {
  local dir=${1:-$BUNDLE_PATH}
  need jq zstd tar sha256sum
  [[ -d $dir ]] || die "no bundle at $dir (run: $0 build)"
  bundle_ok "$dir" || die "$dir does not verify"
  echo "checksums: ok ($(cut -d' ' -f3- "$dir/SHA256SUMS" | tr '\n' ' '))"
  echo "manifest: matches pins ($BUNDLE_NAME, versions.env sha256 ${PINS_SHA256:0:12})"
  archive_version_check "$dir" any || die "version check failed for $dir"
  echo "verify: ok $dir"
}

CMD=${1:-}
case $CMD in
  build) load_pins; cmd_build ;;
  path) load_pins; echo "$BUNDLE_PATH" ;;
  name) load_pins; echo "$BUNDLE_NAME" ;;
  verify) load_pins; cmd_verify "${2:-}" ;;
  -h | --help | help) usage "$0" ;;
  *) die "usage: $0 build | path | name | verify [DIR]" ;;
esac
