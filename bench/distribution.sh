#!/usr/bin/env bash
# How the node image reaches N test-bed hosts, for N = 2 and 4: node_image_source=archive (the
# controller's zstd archive over SSH to every host) and node_image_source=pull (from the fleet
# registry on a host outside the cluster, loaded once from the controller). For each: bytes the
# controller sent (the test-bed bridge's tx counter: the controller is the bridge's host side, and
# host-to-host traffic never crosses that interface), bytes each host received (its eth0 rx
# counter), and wall time until the image is on every host. Prints t(4)/t(2) and
# controller bytes (4)/(2) per source. Hosts, engines and the controller's archive are prepared
# before anything is counted.
# Usage: bench/distribution.sh   (run `make venv deps artifacts` first; takes ~20 min here)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections" ANSIBLE_NOCOLOR=1
export U7S_TESTBED_CPUS=${U7S_TESTBED_CPUS:-$(python3 -c "import os; print(round(os.cpu_count() / 4, 2))")}
REGISTRY=9
trap 'testbed/testbed.sh down >/dev/null 2>&1' EXIT
work=$(mktemp -d)
testbed/testbed.sh image >/dev/null 2>&1
offline=$(artifacts/images.sh path | tail -1)

bridge_tx() {
  cat "/sys/class/net/br-$(docker network inspect -f '{{.Id}}' u7s-testbed | cut -c1-12)/statistics/tx_bytes"
}
host_rx() {  # host number -> bytes its eth0 received
  docker exec "u7s-tb-host$1" cat /sys/class/net/eth0/statistics/rx_bytes
}
playbook() {  # log name, args... ; fails the bench with the log's tail
  local name=$1; shift
  ansible-playbook "$@" >"$work/$name.log" 2>&1 || { tail -40 "$work/$name.log" >&2; exit 1; }
}
now() { python3 -c 'import time; print(time.monotonic())'; }

# One measured step: prints "seconds controller_bytes min_host_rx max_host_rx" for hosts 1..N.
measure() {
  local n=$1 name=$2; shift 2
  local tx0 start i; local -a rx0
  tx0=$(bridge_tx); for ((i = 1; i <= n; i++)); do rx0[i]=$(host_rx "$i"); done
  start=$(now)
  playbook "$name" "$@"
  python3 - "$start" "$(now)" "$tx0" "$(bridge_tx)" "$(for ((i = 1; i <= n; i++)); do echo $(($(host_rx "$i") - rx0[i])); done)" <<'PY'
import sys
start, end, tx0, tx1, rx = sys.argv[1:]
received = [int(x) for x in rx.split()]
print(f"{float(end) - float(start):.1f} {int(tx1) - int(tx0)} {min(received)} {max(received)}")
PY
}

results=$work/results
for n in 2 4; do
  testbed/testbed.sh up "$n" >/dev/null 2>&1
  inventory=$work/inventory-$n
  mkdir -p "$inventory/group_vars"
  testbed/testbed.sh add "$REGISTRY" >"$work/registry-host.yml" 2>/dev/null
  # Two inventories: the cluster's, and the same with the registry host (whose group the
  # settings check refuses until registry.yml has made the registry's CA).
  cp inventories/testbed/hosts.yml "$inventory/hosts.yml"
  python3 - inventories/testbed/hosts.yml "$work/registry-host.yml" "$inventory/with-registry.yml" <<'PY'
import sys, yaml
cluster = yaml.safe_load(open(sys.argv[1]))
registry = yaml.safe_load(open(sys.argv[2]))
cluster["u7s_registry"] = {"hosts": registry}
yaml.safe_dump(cluster, open(sys.argv[3], "w"))
PY
  for group in u7s_cluster u7s_registry; do
    ln -sf "$PWD/inventories/testbed/group_vars/u7s_cluster.yml" "$inventory/group_vars/$group.yml"
  done
  inv=(-i "$inventory/hosts.yml")
  reg=(-i "$inventory/with-registry.yml")
  playbook "prepare-$n" "${inv[@]}" bench/distribution.yml -e distribution_step=prepare -e node_image_source=archive
  echo "archive $n $(measure "$n" "archive-$n" "${inv[@]}" bench/distribution.yml -e distribution_step=image \
    -e node_image_source=archive)" >>"$results"
  # The same hosts forget the image; the registry is brought up (untimed) and loaded (counted).
  ansible "${inv[@]}" u7s_cluster -b --become-user u7s -m ansible.builtin.shell -a \
    'cd ~ && export DOCKER_HOST=unix:///run/user/$(id -u)/docker.sock && docker image rm -f $(docker image ls -q localhost/u7s/node)' \
    >"$work/forget-$n.log" 2>&1 || { tail -20 "$work/forget-$n.log" >&2; exit 1; }
  playbook "registry-$n" "${reg[@]}" playbooks/registry.yml -e "u7s_registry_offline_images_dir=$offline"
  echo "load $n $(measure "$n" "load-$n" "${reg[@]}" playbooks/registry-load.yml \
    -e "u7s_registry_offline_images_dir=$offline")" >>"$results"
  echo "pull $n $(measure "$n" "pull-$n" "${reg[@]}" bench/distribution.yml -e distribution_step=image \
    -e node_image_source=pull)" >>"$results"
done

python3 - "$results" "$U7S_TESTBED_CPUS" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    source, n, seconds, controller, rx_min, rx_max = line.split()
    rows[(source, int(n))] = (float(seconds), int(controller), int(rx_min), int(rx_max))
mb = lambda b: b / 1e6
print(f"cpus per host {sys.argv[2]}; MB = 10^6 bytes; 'load' is the fleet registry's one load from the controller")
print(f"{'step':<8}{'hosts':>6}{'time s':>9}{'controller MB':>15}{'per host MB (min-max)':>24}")
for (source, n), (seconds, controller, rx_min, rx_max) in sorted(rows.items()):
    print(f"{source:<8}{n:>6}{seconds:>9.1f}{mb(controller):>15.1f}{mb(rx_min):>12.1f} - {mb(rx_max):<9.1f}")
for source in ("archive", "pull"):
    (t2, c2, _, _), (t4, c4, _, _) = rows[(source, 2)], rows[(source, 4)]
    print(f"{source}: t(4)/t(2) = {t4 / t2:.2f}   controller bytes (4)/(2) = {c4 / c2:.2f}")
(l2, lc2, _, _), (l4, lc4, _, _) = rows[("load", 2)], rows[("load", 4)]
(p2, pc2, _, _), (p4, pc4, _, _) = rows[("pull", 2)], rows[("pull", 4)]
print(f"pull with its load: t(4)/t(2) = {(l4 + p4) / (l2 + p2):.2f}   "
      f"controller bytes (4)/(2) = {(lc4 + pc4) / (lc2 + pc2):.2f}")
PY
