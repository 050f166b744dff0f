# shellcheck shell=bash
# Shell helpers shared by artifacts/bundle.sh, artifacts/images.sh and
# testbed/testbed.sh: logging, locks, build steps, cache keys, mounts left
# behind, debootstrap. Sourced, never run (hence no shebang, no execute bit),
# with the prefixes of log and die lines:
#
#   # shellcheck source-path=SCRIPTDIR/.. source=lib/u7s-shell.sh
#   . "$REPO/lib/u7s-shell.sh" "images.sh: " "images.sh: error: "
#
# Variables of the script it reads: CMD (need), NICE (heavy, default 0),
# WORK (build_exit_trap); step keeps CURRENT_STEP and TIMINGS.
# Functions whose code decides what a cache holds are part of that cache's key
# (images.sh hashes this file, testbed.sh `declare -f`s run_debootstrap), so
# editing one here rebuilds what it made.

# Cache root of every script (bundles/, go/, work/, images/, testbed/ below it).
# shellcheck disable=SC2034 # read by the scripts
U7S_CACHE_ROOT=${U7S_CACHE_DIR:-/var/cache/u7s}

# ---------------------------------------------------------------- messages

LOG_PREFIX=${1-} ERROR_PREFIX=${2-error: }
log() { printf '%s%s\n' "${LOG_PREFIX:-}" "$*" >&2; }
die() {
  printf '%s%s\n' "${ERROR_PREFIX:-error: }" "$*" >&2
  exit 1
}

# need CMD...: each command must be on PATH.
need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null || die "'$c' not found in PATH${CMD:+ (needed for $CMD)}"
  done
}

# usage FILE: the script's header comment (line 2 up to `set -euo`) as help text.
usage() { sed -n '2,/^set -euo/p' "$1" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# ---------------------------------------------------------------- running

# heavy CMD...: run at the script's nice level (compilers, compressors, debootstrap).
heavy() { nice -n "${NICE:-0}" "$@"; }

# step LABEL CMD...: one build step; records its wall time in TIMINGS
# ("label<TAB>seconds") and its label in CURRENT_STEP for the failure message.
step() {
  local label=$1 t0=$SECONDS
  shift
  CURRENT_STEP=$label
  log "$label ..."
  "$@"
  TIMINGS+=("$label	$((SECONDS - t0))")
  log "$label done in $((SECONDS - t0))s"
}

# timings_json: TIMINGS as a JSON object {"label": seconds, ...} (a manifest's build_seconds).
timings_json() {
  printf '%s\n' "${TIMINGS[@]}" | jq -R -n '[inputs | select(. != "") | split("\t") | {(.[0]): (.[1] | tonumber)}] | add'
}

# EXIT trap of a build in WORK: nothing stays mounted below WORK, and a
# failure names the step it happened in (the work dir is kept for a look).
build_exit_trap() {
  local rc=$?
  if [[ -n ${WORK:-} && -d ${WORK:-} ]]; then umount_below "$WORK"; fi
  if ((rc)); then log "FAILED during: ${CURRENT_STEP:-setup} (work dir kept: ${WORK:-none})"; fi
}

# take_lock FILE [SECONDS]: hold FILE's lock on fd 9 until the script exits,
# waiting for another holder (forever, or at most SECONDS).
take_lock() {
  local file=$1 wait=${2:-}
  mkdir -p "$(dirname "$file")"
  exec 9>"$file"
  flock -n 9 && return 0
  log "waiting for another ${0##*/} run (lock $file)"
  if [[ -n $wait ]]; then
    flock -w "$wait" 9 || die "another ${0##*/} run still holds $file"
  else
    flock 9 || die "cannot lock $file"
  fi
}

# ---------------------------------------------------------------- cached Go builds
# (artifacts/bundle.sh, artifacts/engine-tools.sh: a directory holding $ARCHIVE, manifest.json
# and SHA256SUMS, named by a hash of the pins and checked by a function of the script)

# write_sums DIR: SHA256SUMS over the archive and the manifest.
write_sums() {
  (cd "$1" && sha256sum "$ARCHIVE" manifest.json >SHA256SUMS)
}

# build_ok DIR NAME PINS_FILE: DIR's checksums verify, SHA256SUMS covers both files (a truncated
# one would pass otherwise), and its manifest was built as NAME from exactly the pins of PINS_FILE
# ($PINS_SHA256, $PINS_JSON). Prints the reason to stderr when not.
build_ok() {
  local dir=$1 name=$2 pins_file=$3
  [[ -f $dir/manifest.json && -f $dir/SHA256SUMS ]] || { log "$dir: no build (manifest.json/SHA256SUMS missing)"; return 1; }
  (cd "$dir" && sha256sum --quiet --strict -c SHA256SUMS >&2) || { log "$dir: checksum mismatch"; return 1; }
  [[ $(sed -E 's/^[0-9a-f]{64} [ *]//' "$dir/SHA256SUMS" | sort | tr '\n' ' ') == "$ARCHIVE manifest.json " ]] ||
    { log "$dir: SHA256SUMS does not cover exactly $ARCHIVE and manifest.json"; return 1; }
  jq -e --arg name "$name" --arg sha "$PINS_SHA256" --argjson pins "$PINS_JSON" --argjson schema "$MANIFEST_SCHEMA" \
    '.schema == $schema and .name == $name and .pins_sha256 == $sha and .pins == $pins' "$dir/manifest.json" >/dev/null ||
    { log "$dir: manifest does not match the pins in $pins_file"; return 1; }
}

# go_build_env MODFLAG: Go's caches under $CACHE_DIR/go, reproducible flags (MODFLAG is -mod=...),
# the local toolchain unless GOTOOLCHAIN says otherwise, linux/$ARCH, cgo off (a build turns it on).
go_build_env() {
  export GOMODCACHE=$CACHE_DIR/go/mod GOCACHE=$CACHE_DIR/go/build GOPATH=$CACHE_DIR/go/path
  export GOFLAGS="$1 -modcacherw -buildvcs=false -trimpath"
  export GOTOOLCHAIN=${GOTOOLCHAIN:-local} GO111MODULE=on GOOS=linux GOARCH=$ARCH CGO_ENABLED=0
  unset GOWORK GOBIN
  mkdir -p "$GOMODCACHE" "$GOCACHE" "$GOPATH"
}

# archive_version_check DIR LINKING: unpack DIR/$ARCHIVE; every file of the manifest must match its
# sha256, and each with a version_match must print it (run with its version_args and an empty
# environment); with LINKING "static", such a binary must also have no ELF interpreter.
archive_version_check() {
  local dir=$1 linking=$2 tmp rc=0 name path sha match args out how
  tmp=$(mktemp -d)
  zstd -q -d -c --long=27 "$dir/$ARCHIVE" | tar -x -C "$tmp" || { rm -rf "$tmp"; log "cannot unpack $dir/$ARCHIVE"; return 1; }
  # args last: IFS=tab collapses empty fields, and some binaries take no args.
  while IFS=$'\t' read -r name path sha match args; do
    if [[ $(sha256sum "$tmp/$path" 2>/dev/null | cut -d' ' -f1) != "$sha" ]]; then
      echo "FAIL $name: $path missing from the archive or its sha256 differs from the manifest"
      rc=1
      continue
    fi
    [[ -n $match ]] || { echo "ok   $name: sha256 matches"; continue; }
    how=""
    if [[ $linking == static ]]; then
      if readelf -l "$tmp/$path" 2>/dev/null | grep -q 'Requesting program interpreter'; then
        echo "FAIL $name: dynamically linked ($(readelf -l "$tmp/$path" | grep -o 'interpreter: [^]]*'))"
        rc=1
        continue
      fi
      how="static, "
    fi
    # shellcheck disable=SC2086 # args is a word list from the manifest
    out=$(cd "$tmp" && env -i PATH=/usr/bin:/bin HOME="$tmp" XDG_RUNTIME_DIR="$tmp" timeout 30 "./$path" $args 2>&1) || true
    if [[ $out == *"$match"* ]]; then
      echo "ok   $name: $how$(head -n1 <<<"$out")"
    else
      echo "FAIL $name $args: want '$match', got: $(head -n3 <<<"$out" | tr '\n' ' ')"
      rc=1
    fi
  done < <(jq -r '.files[] | [.name, .path, .sha256, .version_match, (.version_args | join(" "))] | @tsv' "$dir/manifest.json")
  rm -rf "$tmp"
  return "$rc"
}

# pack_files OUT DATE [ZSTD_OPTION...]: the files of $WORK/files.tsv (add_file's lines) described in
# $WORK/files.json (for the manifest) and packed into OUT/$ARCHIVE: a reproducible tar (sorted
# names, which keeps related binaries adjacent inside zstd's window; root owner; mtime DATE), zstd at
# $ZSTD_LEVEL.
pack_files() {
  local out=$1 date=$2 name rel comp ver match args epoch
  shift 2
  mkdir -p "$out"
  : >"$WORK/files.json"
  while IFS=$'\t' read -r name rel comp ver match args; do
    [[ -x $WORK/$rel ]] || die "built file $WORK/$rel missing"
    jq -n --arg name "$name" --arg path "$rel" --arg comp "$comp" --arg ver "$ver" \
      --arg match "$match" --arg args "$args" --arg sha "$(sha256sum "$WORK/$rel" | cut -d' ' -f1)" \
      --argjson size "$(stat -c %s "$WORK/$rel")" \
      '{name: $name, path: $path, component: $comp, version: $ver,
        version_args: ($args | split(" ") | map(select(. != ""))), version_match: $match,
        sha256: $sha, size: $size}' >>"$WORK/files.json"
  done <"$WORK/files.tsv"
  epoch=$(date -u -d "$date" +%s)
  cut -f2 "$WORK/files.tsv" | LC_ALL=C sort |
    tar -C "$WORK" --owner=0 --group=0 --numeric-owner --mtime="@$epoch" --mode=go-w --no-recursion -cf - -T - |
    heavy zstd -q -T0 "-$ZSTD_LEVEL" "$@" -o "$out/$ARCHIVE"
}

# finish_build OUT DEST NAME CHECK T0: the manifest in OUT gets the last step's time (assemble
# wrote it before that step ended) as build_seconds.compress and the total since T0, then the
# checksums; CHECK OUT must pass; OUT replaces DEST, and WORK goes (unless U7S_KEEP_WORK=1).
finish_build() {
  local out=$1 dest=$2 name=$3 check=$4 t0=$5
  jq --argjson c "${TIMINGS[-1]#*	}" --argjson total "$((SECONDS - t0))" \
    '.build_seconds.compress = $c | .build_seconds.total = $total' "$out/manifest.json" >"$WORK/m.json"
  mv "$WORK/m.json" "$out/manifest.json"
  write_sums "$out"
  CURRENT_STEP="self-check"
  "$check" "$out" || die "freshly built $name does not verify"
  rm -rf "$dest"
  mv "$out" "$dest"
  [[ ${U7S_KEEP_WORK:-0} == 1 ]] || rm -rf "$WORK"
  trap - EXIT
  log "built $name in $((SECONDS - t0))s ($(du -sh "$dest" | cut -f1))"
}

# cached_build DEST NAME CHECK: succeed (after printing DEST) when DEST holds a build that
# CHECK passes, waiting first for a concurrent builder of NAME (its lock in DEST's directory).
# On failure the caller builds, still holding the lock.
cached_build() {
  local dest=$1 name=$2 check=$3
  if [[ -d $dest ]] && "$check" "$dest"; then
    log "cached $name verifies: $dest"
    echo "$dest"
    return 0
  fi
  mkdir -p "$(dirname "$dest")" "$CACHE_DIR/work"
  take_lock "$(dirname "$dest")/.$name.lock"
  if [[ -d $dest ]] && "$check" "$dest" 2>/dev/null; then
    log "$name built by a concurrent run: $dest"
    echo "$dest"
    return 0
  fi
  return 1
}

# ---------------------------------------------------------------- caches

# short_hash [N] < input: the first N (default 12) hex digits of its sha256.
short_hash() { sha256sum | cut -c1-"${1:-12}"; }

# Debian's name for this machine's architecture (amd64, arm64).
debian_arch() { uname -m | sed -e s/x86_64/amd64/ -e s/aarch64/arm64/; }

# ---------------------------------------------------------------- mounts

# mounts_below DIR: mount points below DIR, deepest first (debootstrap mounts
# proc/sys in its target while it works, and an interruption leaves them).
mounts_below() {
  awk -v d="$1" 'index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

umount_below() {
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(mounts_below "$1")
}

# remove_tree DIR: rm -rf that never goes through a mount.
remove_tree() {
  [[ -e $1 ]] || return 0
  umount_below "$1"
  rm -rf --one-file-system "$1"
}

# ---------------------------------------------------------------- debootstrap

# run_debootstrap LOG SUITE TARGET MIRROR OPTION...: a minbase Debian SUITE in
# TARGET (debootstrap OPTIONs such as --include, --cache-dir), at the nice
# level; its output goes to LOG, and on failure the tail of LOG and of
# debootstrap's own log end the script.
run_debootstrap() {
  local log=$1 suite=$2 target=$3 mirror=$4
  shift 4
  mkdir -p "$(dirname "$log")"
  if ! heavy debootstrap --variant=minbase "$@" "$suite" "$target" "$mirror" >"$log" 2>&1; then
    tail -n 25 "$log" "$target/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    die "debootstrap $suite failed (log: $log)"
  fi
}
