#!/usr/bin/env bash
# Bare hosts to Ready with playbooks/site.yml for 2 and for 4 test-bed hosts, each host capped
# at the same CPU share (so 4 hosts never need more than the machine has), and the ratio
# t(4)/t(2): what the collection serialises (the controller, one-at-a-time steps, waits),
# not how busy the machine is. Prints each run's ten slowest tasks (profile_tasks).
# Usage: bench/scaling.sh [cpus-per-host]   (default: the machine's cores / 4; run `make venv deps artifacts` first)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections"
export U7S_TESTBED_CPUS=${1:-$(python3 -c "import os; print(round(os.cpu_count() / 4, 2))")}
export ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks PROFILE_TASKS_TASK_OUTPUT_LIMIT=10 ANSIBLE_NOCOLOR=1
trap 'testbed/testbed.sh down >/dev/null 2>&1' EXIT
log=$(mktemp -d)
testbed/testbed.sh image >/dev/null 2>&1

bring_up() {  # hosts -> seconds from bare hosts to Ready (site.yml), log in $log/<hosts>.log
  local hosts=$1 start
  testbed/testbed.sh up "$hosts" >/dev/null 2>&1
  start=$EPOCHREALTIME
  ansible-playbook -i inventories/testbed/hosts.yml playbooks/site.yml >"$log/$hosts.log" 2>&1 \
    || { tail -40 "$log/$hosts.log" >&2; exit 1; }
  python3 -c "import sys; print(round(float(sys.argv[1]) - float(sys.argv[2]), 1))" "$EPOCHREALTIME" "$start"
}
two=$(bring_up 2)
four=$(bring_up 4)
for hosts in 2 4; do
  echo "--- $hosts hosts: slowest tasks"
  # profile_tasks prints its summary after the recap: "<task> ---- 12.34s".
  sed -n '/^=\{10,\}/,$p' "$log/$hosts.log" | grep -E ' -+ [0-9.]+s$' | head -10
done
printf 'cpus_per_host=%s t(2)=%ss t(4)=%ss t(4)/t(2)=%.2f\n' "$U7S_TESTBED_CPUS" "$two" "$four" \
  "$(python3 -c "import sys; print(float(sys.argv[1]) / float(sys.argv[2]))" "$four" "$two")"
