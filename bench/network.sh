#!/usr/bin/env bash
# The six iperf3 rows of issue 10 on the test bed, for every engine and for nerdctl with and
# without bypass4netns: Pod->Pod, Pod->NodePort and Host->NodePort, each to the same node and
# to the other node. Each configuration gets fresh test-bed hosts (host1 the control plane,
# host2 a worker) and one site.yml; then bench/network.yml puts the iperf3 server on host2 and
# an idle client pod on each host. Pod rows run iperf3 in a client pod (kubectl exec); host rows
# run the same image in the outer engine inside the test-bed host's network namespace.
# NodePort rows go to host2's address (the port is published on every host, u7s_extra_ports;
# externalTrafficPolicy Local keeps the server on host2 behind it).
# A figure is the median of U7S_BENCH_RUNS (at least 3) iperf3 runs of U7S_BENCH_SECONDS (10 s),
# one TCP stream, the receiver's rate; every run is printed, then a table in Gbps with, per row,
# nerdctl+bypass4netns / nerdctl (the same rootless containerd with slirp4netns alone), and per
# configuration Pod->NodePort / Host->NodePort.
# Usage: bench/network.sh [configuration...]
#   configurations: docker podman nerdctl nerdctl-bypass4netns (default: all four; ~40 min here)
#   Run `make venv deps artifacts engine-tools` first (the iperf3 image: artifacts/images.sh;
#   nerdctl's binaries: artifacts/engine-tools.sh). U7S_TESTBED_CPUS caps each host (default: none).
#   U7S_BENCH_KEEP=1 leaves the last configuration's test bed up, to look at it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections" ANSIBLE_NOCOLOR=1
RUNS=${U7S_BENCH_RUNS:-3}
DURATION=${U7S_BENCH_SECONDS:-10}
NAMESPACE=u7s-bench-network
# Where the workload goes (the test bed's inventory names the hosts host1, host2).
SERVER_HOST=2 OTHER_HOST=1
SERVER_NODE=u7s-host$SERVER_HOST OTHER_NODE=u7s-host$OTHER_HOST
ALL_CONFIGS=(docker podman nerdctl nerdctl-bypass4netns)

die() { echo "bench/network.sh: $*" >&2; exit 1; }

if ! [[ $RUNS =~ ^[0-9]+$ ]] || ((RUNS < 3)); then
  die "U7S_BENCH_RUNS must be 3 or more (a median of at least 3 runs), got '$RUNS'"
fi
if ! [[ $DURATION =~ ^[0-9]+$ ]] || ((DURATION < 1)); then
  die "U7S_BENCH_SECONDS must be a whole number of seconds, got '$DURATION'"
fi
configs=("$@")
((${#configs[@]} > 0)) || configs=("${ALL_CONFIGS[@]}")
for config in "${configs[@]}"; do
  [[ " ${ALL_CONFIGS[*]} " == *" $config "* ]] || die "unknown configuration '$config' (one of: ${ALL_CONFIGS[*]})"
done

KEEP=${U7S_BENCH_KEEP:-0}
[[ $KEEP == 1 ]] || trap 'testbed/testbed.sh down >/dev/null 2>&1' EXIT
work=$(mktemp -d)
results=$work/results.tsv
: >"$results"
testbed/testbed.sh image >/dev/null 2>&1

image=$(artifacts/images.sh list 2>/dev/null | grep '/iperf3:' || true)
[[ -n $image ]] || die "artifacts/images.sh lists no iperf3 image (this checkout's images.sh builds one)"
docker image inspect "$image" >/dev/null 2>&1 || die "the local engine lacks $image: run artifacts/images.sh build"
node_port=$(python3 -c '
import sys, yaml
(service,) = [item for item in yaml.safe_load(open(sys.argv[1]))["items"] if item["kind"] == "Service"]
print(service["spec"]["ports"][0]["nodePort"])
' bench/network.yml)
tools=""
if [[ " ${configs[*]} " == *" nerdctl"* ]]; then
  tools=$(artifacts/engine-tools.sh path)
  [[ -f $tools/manifest.json ]] || die "no engine tools at $tools: run make engine-tools"
fi

# bypass4netns needs Linux 5.9 (SECCOMP_IOCTL_NOTIF_ADDFD); the test-bed hosts run this kernel.
kernel=$(uname -r)
IFS=. read -r major minor _ <<<"$kernel"
minor=${minor%%[!0-9]*}
bypass4netns_possible=false
if ((major > 5 || (major == 5 && ${minor:-0} >= 9))); then bypass4netns_possible=true; fi

# The settings of a configuration, as site.yml's extra variables (JSON).
extra_vars() {
  python3 - "$1" "$node_port" "$tools" <<'PY'
import json, sys
config, port, tools = sys.argv[1:]
settings = {"u7s_extra_ports": [{"port": int(port), "protocol": "tcp"}],
            "u7s_engine": "nerdctl" if config.startswith("nerdctl") else config}
if settings["u7s_engine"] == "nerdctl":
    settings["rootless_runtime_nerdctl_tools_dir"] = tools
    # Explicit both ways: auto would turn it on for the plain nerdctl column too.
    settings["u7s_bypass4netns"] = "true" if config == "nerdctl-bypass4netns" else "false"
print(json.dumps(settings))
PY
}

# The cluster user's kubectl on the control-plane host (the kubeadm role's wrapper).
kubectl() {
  docker exec -i "u7s-tb-host$OTHER_HOST" sudo -u u7s -H /home/u7s/.local/bin/kubectl "$@"
}

# iperf3 ARGS... in a client pod, or in a test-bed host's network namespace (the outer engine's
# copy of the same image: the host has no iperf3 of its own).
in_pod() {
  local pod=$1
  shift
  kubectl exec -n "$NAMESPACE" "$pod" -- iperf3 "$@"
}
on_host() {
  local host=$1
  shift
  docker run --rm --network "container:u7s-tb-host$host" "$image" "$@"
}

# measure ROW COMMAND...: RUNS runs of COMMAND --time DURATION --json, each appended to the
# results as "configuration row run bits/s". A run the server refuses (busy with the last one's
# end, NodePort rules not yet synced) is tried again, three times at most.
measure() {
  local row=$1 run try json
  shift
  for ((run = 1; run <= RUNS; run++)); do
    json=$work/$config.$row.$run.json
    for try in 1 2 3; do
      if "$@" --time "$DURATION" --json </dev/null >"$json" 2>"$json.err"; then break; fi
      ((try < 3)) || { cat "$json.err" "$json" >&2; die "$config $row: iperf3 failed 3 times"; }
      sleep 3
    done
    python3 - "$json" "$config" "$row" "$run" >>"$results" <<'PY'
import json, sys
path, config, row, run = sys.argv[1:]
bits = json.load(open(path))["end"]["sum_received"]["bits_per_second"]
print(f"{config}\t{row}\t{run}\t{bits}")
PY
    tail -1 "$results" | awk -F '\t' '{printf "%-22s %-20s run %s: %7.3f Gbps\n", $1, $2, $3, $4 / 1e9}'
  done
}

bench_config() {
  local log=$work/$config.site.log server_ip host_address
  testbed/testbed.sh up 2 >/dev/null 2>&1
  ansible-playbook -i inventories/testbed/hosts.yml playbooks/site.yml -e "$(extra_vars "$config")" >"$log" 2>&1 \
    || { tail -40 "$log" >&2; die "$config: site.yml failed (log: $log)"; }
  if [[ $config == nerdctl-bypass4netns ]]; then
    for host in "$OTHER_HOST" "$SERVER_HOST"; do
      docker exec "u7s-tb-host$host" pgrep -u u7s -x bypass4netns >/dev/null \
        || die "$config: no bypass4netns runs on host$host, the figures would not be bypass4netns's"
    done
  fi
  sed -e "s|@IMAGE@|$image|g" -e "s|@SERVER_NODE@|$SERVER_NODE|g" -e "s|@OTHER_NODE@|$OTHER_NODE|g" bench/network.yml \
    | kubectl apply -f - >/dev/null
  kubectl wait -n "$NAMESPACE" --for=condition=Ready pod --all --timeout=300s >/dev/null
  server_ip=$(kubectl get pod -n "$NAMESPACE" iperf3-server -o jsonpath='{.status.podIP}')
  host_address=$(kubectl get node "$SERVER_NODE" -o jsonpath='{.status.addresses[?(@.type=="ExternalIP")].address}')
  [[ -n $server_ip && -n $host_address ]] || die "$config: no server pod address ('$server_ip') or host address ('$host_address')"

  measure pod-pod-same in_pod iperf3-client-same --client "$server_ip" --port 5201
  measure pod-pod-other in_pod iperf3-client-other --client "$server_ip" --port 5201
  measure pod-nodeport-same in_pod iperf3-client-same --client "$host_address" --port "$node_port"
  measure pod-nodeport-other in_pod iperf3-client-other --client "$host_address" --port "$node_port"
  measure host-nodeport-same on_host "$SERVER_HOST" --client "$host_address" --port "$node_port"
  measure host-nodeport-other on_host "$OTHER_HOST" --client "$host_address" --port "$node_port"
  [[ $KEEP == 1 && $config == "${configs[-1]}" ]] || testbed/testbed.sh down >/dev/null 2>&1
}

measured=()
for config in "${configs[@]}"; do
  if [[ $config == nerdctl-bypass4netns && $bypass4netns_possible != true ]]; then
    echo "$config: skipped, Linux $kernel is older than 5.9 (bypass4netns needs SECCOMP_IOCTL_NOTIF_ADDFD)"
    continue
  fi
  bench_config
  measured+=("$config")
done

python3 - "$results" "$RUNS" "$DURATION" "$kernel" "${measured[@]}" <<'PY'
import statistics
import sys

results, runs, duration, kernel, *configs = sys.argv[1:]
ROWS = [("pod-pod-same", "Pod->Pod, same node"), ("pod-pod-other", "Pod->Pod, different node"),
        ("pod-nodeport-same", "Pod->NodePort, same node"), ("pod-nodeport-other", "Pod->NodePort, different node"),
        ("host-nodeport-same", "Host->NodePort, same node"), ("host-nodeport-other", "Host->NodePort, different node")]
bits = {}
for line in open(results):
    config, row, _run, value = line.rstrip("\n").split("\t")
    bits.setdefault((config, row), []).append(float(value))
gbps = {key: statistics.median(values) / 1e9 for key, values in bits.items()}
accelerated, plain = "nerdctl-bypass4netns", "nerdctl"
ratio_column = accelerated in configs and plain in configs


def cell(value, width, digits=2):
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


widths = {config: max(8, len(config) + 2) for config in configs}
print(f"\nGbps: median of {runs} iperf3 runs of {duration} s (one TCP stream, received), Linux {kernel}")
print(f"{'':<32}" + "".join(f"{config:>{widths[config]}}" for config in configs)
      + (f"{'b4ns/slirp':>12}" if ratio_column else ""))
for row, label in ROWS:
    line = f"{label:<32}" + "".join(cell(gbps.get((config, row)), widths[config]) for config in configs)
    if ratio_column:
        fast, slow = gbps.get((accelerated, row)), gbps.get((plain, row))
        line += cell(fast / slow if fast is not None and slow else None, 12)
    print(line)
print("Pod->NodePort / Host->NodePort")
for where in ("same", "other"):
    label = "  same node" if where == "same" else "  different node"
    cells = []
    for config in configs:
        pod, host = gbps.get((config, f"pod-nodeport-{where}")), gbps.get((config, f"host-nodeport-{where}"))
        cells.append(cell(pod / host if pod is not None and host else None, widths[config]))
    print(f"{label:<32}" + "".join(cells))
if ratio_column:
    print("b4ns/slirp: nerdctl with bypass4netns / nerdctl with slirp4netns alone (the same rootless containerd)")
    # Noise: each figure's runs span a range; a row is faster or slower with bypass4netns only when
    # the two ranges do not overlap.
    print("bypass4netns against slirp4netns alone, by the range of the runs (min-max, Gbps):")
    for row, label in ROWS:
        fast, slow = bits.get((accelerated, row)), bits.get((plain, row))
        if not fast or not slow:
            continue
        fast_range, slow_range = (min(fast) / 1e9, max(fast) / 1e9), (min(slow) / 1e9, max(slow) / 1e9)
        verdict = ("faster" if fast_range[0] > slow_range[1] else "slower" if fast_range[1] < slow_range[0]
                   else "within noise (the ranges overlap)")
        print(f"  {label:<32}{fast_range[0]:7.2f}-{fast_range[1]:<7.2f} vs {slow_range[0]:7.2f}-{slow_range[1]:<7.2f} {verdict}")
PY
echo "every run's iperf3 output: $work"
