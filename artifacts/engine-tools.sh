#!/usr/bin/env bash
# Engine tools tarball for u7s.cluster's nerdctl engine.
#
# Builds, from the Go module proxy only, the binaries of the rootless nerdctl
# engine that Debian does not package, at the versions pinned in
# artifacts/engine-tools.env: nerdctl (static, CGO_ENABLED=0, as nerdctl's
# Makefile), bypass4netns and bypass4netnsd (cgo, statically linked against the
# build machine's libseccomp, as bypass4netns' Makefile `static`), and nerdctl's
# rootless scripts (extras/rootless/containerd-rootless.sh and -setuptool.sh,
# from the same module). Each module's h1: hash is checked against the pin
# before it is built. The result is a directory holding engine-tools.tar.zst
# (bin/*), manifest.json and SHA256SUMS, cached under
# ${U7S_CACHE_DIR:-/var/cache/u7s}/engine-tools/<name>/ where <name> carries a
# hash of engine-tools.env.
#
# Usage: engine-tools.sh build | path | name | verify [DIR]
#
# Environment:
#   U7S_CACHE_DIR              cache root (default /var/cache/u7s): engine-tools/, go/ (GOMODCACHE, GOCACHE), work/
#   U7S_ENGINE_TOOLS_FILE      pins file (default artifacts/engine-tools.env)
#   U7S_BUILD_NICE             nice level for compilers/compressor (default 19)
#   U7S_ZSTD_LEVEL             zstd level (default 19)
#   U7S_KEEP_WORK=1            keep the build work dir (sources, raw binaries)
#   GOPROXY, GOTOOLCHAIN       honoured; GOTOOLCHAIN defaults to "local" so a too-old Go fails loudly
set -euo pipefail

ARTIFACTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$ARTIFACTS_DIR")
# shellcheck source-path=SCRIPTDIR/.. source=lib/u7s-shell.sh
. "$REPO_ROOT/lib/u7s-shell.sh" "engine-tools.sh: " "engine-tools.sh: error: "
PINS_FILE=${U7S_ENGINE_TOOLS_FILE:-$ARTIFACTS_DIR/engine-tools.env}
CACHE_DIR=$U7S_CACHE_ROOT
# shellcheck disable=SC2034 # heavy's nice level
NICE=${U7S_BUILD_NICE:-19}
ZSTD_LEVEL=${U7S_ZSTD_LEVEL:-19}
MANIFEST_SCHEMA=1
ARCHIVE=engine-tools.tar.zst

REQUIRED_PINS=(ENGINE_TOOLS_REVISION NERDCTL_MODULE NERDCTL_VERSION NERDCTL_H1 NERDCTL_COMMIT
  BYPASS4NETNS_MODULE BYPASS4NETNS_VERSION BYPASS4NETNS_H1 BYPASS4NETNS_PATCH BYPASS4NETNS_PATCH_SHA256
  BYPASS4NETNS_BUILD_VERSION ENGINE_TOOLS_BUILD_DATE)

load_pins() {
  [[ -r $PINS_FILE ]] || die "pins file $PINS_FILE not readable"
  # shellcheck disable=SC1090
  . "$PINS_FILE"
  local k
  for k in "${REQUIRED_PINS[@]}"; do
    [[ -n ${!k:-} ]] || die "$PINS_FILE does not set $k"
  done
  for k in NERDCTL_H1 BYPASS4NETNS_H1; do
    [[ ${!k} =~ ^h1:[A-Za-z0-9+/]{43}=$ ]] || die "$k=${!k} is not an h1: module hash"
  done
  [[ $NERDCTL_COMMIT =~ ^[0-9a-f]{40}$ ]] || die "NERDCTL_COMMIT=$NERDCTL_COMMIT is not a 40-digit commit"
  [[ $ENGINE_TOOLS_BUILD_DATE =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] ||
    die "ENGINE_TOOLS_BUILD_DATE=$ENGINE_TOOLS_BUILD_DATE is not YYYY-MM-DDThh:mm:ssZ"
  PINS_SHA256=$(sha256sum "$PINS_FILE" | cut -d' ' -f1)
  ARCH=$(debian_arch)
  TOOLS_NAME="u7s-engine-tools-nerdctl-${NERDCTL_VERSION}-linux-${ARCH}-${PINS_SHA256:0:8}"
  TOOLS_PATH="$CACHE_DIR/engine-tools/$TOOLS_NAME"
  PINS_JSON=$(grep -E '^[A-Z0-9_]+=' "$PINS_FILE" | cut -d= -f1 |
    while read -r k; do printf '%s\t%s\n' "$k" "${!k}"; done |
    jq -Rn '[inputs | split("\t") | {(.[0]): .[1]}] | add')
}

# ---------------------------------------------------------------- checking

# tools_ok DIR: checksums verify and the manifest was built from exactly these pins.
tools_ok() { build_ok "$1" "$TOOLS_NAME" "$PINS_FILE"; }

# ---------------------------------------------------------------- building

setup_go_env() {
  # -mod=readonly: each module builds with its own go.mod and go.sum, unchanged.
  go_build_env -mod=readonly
  # nerdctl v2.2.0 is missing from the checksum database; NERDCTL_H1 checks it instead.
  export GONOSUMDB=${NERDCTL_MODULE%/v[0-9]*}
}

# fetch_source MOD VER H1 DEST: download MOD@VER from the proxy, refuse it unless
# its h1: hash is H1, copy its source tree (writable) to DEST.
fetch_source() {
  local mod=$1 ver=$2 h1=$3 dest=$4 j sum dir
  j=$(cd "$WORK" && GOFLAGS=-modcacherw go mod download -json "$mod@$ver") ||
    die "cannot fetch $mod@$ver from the Go module proxy ($(go env GOPROXY)): $(jq -r '.Error // empty' <<<"$j" 2>/dev/null)"
  sum=$(jq -er .Sum <<<"$j")
  dir=$(jq -er .Dir <<<"$j")
  [[ $sum == "$h1" ]] || die "$mod@$ver has hash $sum, the pin is $h1: refusing to build it"
  # The module cache's extracted tree could differ from the checked zip; hash it again.
  [[ $(cd "$WORK" && go mod download -json "$mod@$ver" | jq -r .Sum) == "$h1" ]] || die "$mod@$ver: hash changed"
  rm -rf "$dest"
  cp -r "$dir" "$dest"
  chmod -R u+w "$dest"
}

gobuild() {
  local dir=$1 out=$2 ldflags=$3 tags=$4
  shift 4
  (cd "$dir" && heavy go build -tags "$tags" -ldflags "-s -w -buildid= $ldflags" -o "$out" "$@")
}

add_file() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$WORK/files.tsv"; }

build_nerdctl() {
  local src=$WORK/src/nerdctl pkg=$NERDCTL_MODULE/pkg/version
  fetch_source "$NERDCTL_MODULE" "$NERDCTL_VERSION" "$NERDCTL_H1" "$src"
  # nerdctl's go.mod replaces its test framework github.com/containerd/nerdctl/mod/tigron
  # with ./mod/tigron, a nested module the proxy zip leaves out and the proxy does not
  # serve. Only cmd/nerdctl/helpers/testing_linux.go (test helpers in a non-test file:
  # NewCosignKeyPair, ComposeUp, used by no non-test code) reaches it from the binary.
  # So that file goes and an empty go.mod stands in for the module; with -mod=readonly
  # Go refuses the build if this changed any selected version.
  [[ -f $src/cmd/nerdctl/helpers/testing_linux.go ]] || die "nerdctl layout changed: cmd/nerdctl/helpers/testing_linux.go missing"
  if grep -rl --include='*.go' -e 'NewCosignKeyPair\|ComposeUp(' "$src/cmd" "$src/pkg" |
    grep -v -e '_test\.go$' -e '/pkg/testutil/' -e 'helpers/testing_linux\.go$' | grep -q .; then
    die "non-test nerdctl code uses the test helpers of cmd/nerdctl/helpers/testing_linux.go"
  fi
  rm "$src/cmd/nerdctl/helpers/testing_linux.go"
  mkdir -p "$src/mod/tigron"
  printf 'module github.com/containerd/nerdctl/mod/tigron\n\ngo 1.24\n' >"$src/mod/tigron/go.mod"
  # As nerdctl's Makefile: CGO_ENABLED=0, -X version.Version and version.Revision.
  gobuild "$src" "$WORK/bin/nerdctl" "-X $pkg.Version=$NERDCTL_VERSION -X $pkg.Revision=$NERDCTL_COMMIT" "" ./cmd/nerdctl
  add_file nerdctl bin/nerdctl nerdctl "$NERDCTL_VERSION" "nerdctl version ${NERDCTL_VERSION#v}" "--version"
  # The rootless scripts of the same release: containerd-rootless.sh runs containerd
  # in RootlessKit; the setuptool is kept for its reference and `check`.
  local s
  for s in containerd-rootless.sh containerd-rootless-setuptool.sh; do
    install -m 0755 "$src/extras/rootless/$s" "$WORK/bin/$s"
    add_file "$s" "bin/$s" nerdctl "$NERDCTL_VERSION" "" ""
  done
}

build_bypass4netns() {
  local src=$WORK/src/bypass4netns n
  need "${CC:-gcc}" pkg-config
  pkg-config --exists libseccomp || die "libseccomp development files missing (Debian: apt-get install libseccomp-dev pkg-config)"
  [[ -f $(pkg-config --variable=libdir libseccomp)/libseccomp.a ]] ||
    die "libseccomp.a missing from $(pkg-config --variable=libdir libseccomp) (Debian: libseccomp-dev)"
  fetch_source "$BYPASS4NETNS_MODULE" "$BYPASS4NETNS_VERSION" "$BYPASS4NETNS_H1" "$src"
  local patch=$ARTIFACTS_DIR/patches/$BYPASS4NETNS_PATCH
  [[ $(sha256sum "$patch" | cut -d' ' -f1) == "$BYPASS4NETNS_PATCH_SHA256" ]] ||
    die "$patch: its sha256 is not BYPASS4NETNS_PATCH_SHA256 of $PINS_FILE"
  need patch
  patch -d "$src" -p1 --forward --fuzz=0 --quiet <"$patch" || die "$BYPASS4NETNS_PATCH does not apply to $BYPASS4NETNS_MODULE@$BYPASS4NETNS_VERSION"
  for n in bypass4netns bypass4netnsd; do
    CGO_ENABLED=1 gobuild "$src" "$WORK/bin/$n" \
      "-X $BYPASS4NETNS_MODULE/pkg/version.Version=$BYPASS4NETNS_BUILD_VERSION -linkmode external -extldflags -static" \
      netgo,osusergo "./cmd/$n"
    add_file "$n" "bin/$n" bypass4netns "$BYPASS4NETNS_BUILD_VERSION" "$n version ${BYPASS4NETNS_BUILD_VERSION#v}" "--version"
  done
}

assemble() {
  local out=$1
  pack_files "$out" "$ENGINE_TOOLS_BUILD_DATE"
  jq -n --arg name "$TOOLS_NAME" --arg sha "$PINS_SHA256" --argjson pins "$PINS_JSON" --argjson schema "$MANIFEST_SCHEMA" \
    --arg arch "$ARCH" --arg gov "$(go env GOVERSION)" --arg built "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --arg archive "$ARCHIVE" --argjson asize "$(stat -c %s "$out/$ARCHIVE")" --arg zlevel "$ZSTD_LEVEL" \
    --arg seccomp "$(pkg-config --modversion libseccomp)" --arg libc "$(ldd --version | head -n1)" \
    --argjson timings "$(timings_json)" --slurpfile files "$WORK/files.json" \
    '{schema: $schema, name: $name, os: "linux", arch: $arch, pins_sha256: $sha, pins: $pins,
      archive: {path: $archive, format: "tar", compression: "zstd -\($zlevel)", size: $asize},
      go_version: $gov, built_at: $built,
      static_libraries: {libseccomp: $seccomp, libc: $libc},
      build_seconds: $timings,
      files: $files}' >"$out/manifest.json"
}

do_build() {
  need go jq zstd tar sha256sum flock readelf
  setup_go_env
  WORK=$(mktemp -d "$CACHE_DIR/work/$TOOLS_NAME.XXXXXX")
  mkdir -p "$WORK/bin" "$WORK/src"
  TIMINGS=()
  CURRENT_STEP=setup
  trap build_exit_trap EXIT
  log "building $TOOLS_NAME in $WORK ($(go env GOVERSION), GOMODCACHE=$GOMODCACHE)"
  local t0=$SECONDS
  step nerdctl build_nerdctl
  step bypass4netns build_bypass4netns
  step compress assemble "$WORK/out"
  finish_build "$WORK/out" "$TOOLS_PATH" "$TOOLS_NAME" tools_ok "$t0"
}

cmd_build() {
  cached_build "$TOOLS_PATH" "$TOOLS_NAME" tools_ok && return
  do_build
  echo "$TOOLS_PATH"
}

cmd_verify() {
  local dir=${1:-$TOOLS_PATH}
  need jq zstd tar sha256sum readelf
  [[ -d $dir ]] || die "no tools tarball at $dir (run: $0 build)"
  tools_ok "$dir" || die "$dir does not verify"
  echo "checksums: ok ($(cut -d' ' -f3- "$dir/SHA256SUMS" | tr '\n' ' '))"
  echo "manifest: matches pins ($TOOLS_NAME, engine-tools.env sha256 ${PINS_SHA256:0:12})"
  archive_version_check "$dir" static || die "version check failed for $dir"
  echo "verify: ok $dir"
}

CMD=${1:-}
case $CMD in
  build) load_pins; cmd_build ;;
  path) load_pins; echo "$TOOLS_PATH" ;;
  name) load_pins; echo "$TOOLS_NAME" ;;
  verify) load_pins; cmd_verify "${2:-}" ;;
  -h | --help | help) usage "$0" ;;
  *) die "usage: $0 build | path | name | verify [DIR]" ;;
esac
