#!/usr/bin/env bash
# Times playbooks/site.yml on fresh test-bed hosts: the first converge and an
# idempotent re-run, and prints the re-run/first ratio (lower is better).
# Usage: bench/converge.sh [hosts]   (run `make venv deps` first)
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${1:-2}
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections"
trap 'testbed/testbed.sh down >/dev/null 2>&1' EXIT

testbed/testbed.sh image >/dev/null 2>&1
testbed/testbed.sh up "$hosts" >/dev/null 2>&1

seconds() {  # runs site.yml, prints its wall time in seconds
  local start=$EPOCHREALTIME
  ansible-playbook -i inventories/testbed/hosts.yml playbooks/site.yml >"$1" 2>&1
  python3 -c "import sys; print(float(sys.argv[1]) - float(sys.argv[2]))" "$EPOCHREALTIME" "$start"
}
log=$(mktemp -d)
first=$(seconds "$log/first.log")
rerun=$(seconds "$log/rerun.log")
changed=$(grep -Eo 'changed=[0-9]+' "$log/rerun.log" | sort -u | tr '\n' ' ')
printf 'hosts=%s first_converge_s=%.1f rerun_s=%.1f rerun/first=%.2f rerun: %s\n' \
  "$hosts" "$first" "$rerun" "$(python3 -c "import sys; print(float(sys.argv[1]) / float(sys.argv[2]))" "$rerun" "$first")" "$changed"
