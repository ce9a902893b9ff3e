#!/usr/bin/env bash
# Two "hosts" on one machine: two network namespaces joined by a veth pair (10.200.0.1 and 10.200.0.2), a hostfile
# naming both, and an rsh agent that enters a host's namespace instead of ssh. mpirun starts one dtrain rank on each;
# every byte between the ranks goes over TCP between the namespaces. The training must end with the same weights as
# the same 2 ranks on one host. The namespaces are removed even when the test fails.
# usage: two_hosts.sh SOURCE_DIR BUILD_DIR SCRATCH      (exit 77: skipped, not root; a failure when CI=true)
set -euo pipefail
source_dir=$1 build_dir=$2 scratch=$3
if [ "$(id -u)" -ne 0 ]; then
  echo "skipped: network namespaces need root"
  [ "${CI:-}" != true ] || { echo "two_hosts.sh: CI=true: a skipped test is a failure" >&2; exit 1; }
  exit 77
fi
hosts=(dtrain-host1-$$ dtrain-host2-$$)
cleanup() {
  for ns in "${hosts[@]}"; do ip netns delete "$ns" 2>/dev/null || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT
rm -rf "$scratch"
mkdir -p "$scratch"

for i in 0 1; do
  ip netns add "${hosts[i]}"
  ip -n "${hosts[i]}" link set lo up
done
ip link add "dtv1-$$" netns "${hosts[0]}" type veth peer name "dtv2-$$" netns "${hosts[1]}"
ip -n "${hosts[0]}" addr add 10.200.0.1/24 dev "dtv1-$$"
ip -n "${hosts[1]}" addr add 10.200.0.2/24 dev "dtv2-$$"
ip -n "${hosts[0]}" link set "dtv1-$$" up
ip -n "${hosts[1]}" link set "dtv2-$$" up

# The rsh agent: `agent HOST COMMAND...` runs COMMAND (a shell command line, as ssh would) inside HOST's namespace.
cat > "$scratch/netns-rsh" <<AGENT
#!/bin/sh
host=\$1
shift
case "\$host" in
  10.200.0.1) ns=${hosts[0]} ;;
  10.200.0.2) ns=${hosts[1]} ;;
  *) echo "netns-rsh: unknown host \$host" >&2; exit 255 ;;
esac
exec ip netns exec "\$ns" /bin/sh -c "\$*"
AGENT
chmod +x "$scratch/netns-rsh"
printf '10.200.0.1 slots=1\n10.200.0.2 slots=1\n' > "$scratch/hostfile"

"$build_dir/io/dtrain-shard" --fashion-mnist /usr/share/datasets/fashion-mnist --split train --limit 2048 \
  --output "$scratch/data" > /dev/null
args=(--train-data "$scratch/data" --model mlp --batch-size 32 --epochs 2 --optimizer adam --lr 0.001 --progress none)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fingerprint() { sed -n 's/^dtrain: weights crc32 \([0-9a-f]*\)$/\1/p' "$1"; }

# mpirun itself lives on host 1, so that its daemons reach it over the veth link.
ip netns exec "${hosts[0]}" mpirun --hostfile "$scratch/hostfile" -np 2 --map-by node --bind-to none \
  --mca plm_rsh_agent "$scratch/netns-rsh" --mca pml ob1 --mca btl self,tcp \
  --mca btl_tcp_if_include 10.200.0.0/24 --mca oob_tcp_if_include 10.200.0.0/24 \
  "$build_dir/runtime/dtrain" "${args[@]}" --dry-run > "$scratch/dry-run.out" 2>&1 ||
  { cat "$scratch/dry-run.out"; echo "FAIL: the dry run across two hosts failed"; exit 1; }
grep -q "2 ranks on 2 nodes" "$scratch/dry-run.out" ||
  { cat "$scratch/dry-run.out"; echo "FAIL: dtrain does not see two nodes"; exit 1; }
echo "ok   dry run: 2 ranks on 2 nodes"

ip netns exec "${hosts[0]}" mpirun --hostfile "$scratch/hostfile" -np 2 --map-by node --bind-to none \
  --mca plm_rsh_agent "$scratch/netns-rsh" --mca pml ob1 --mca btl self,tcp \
  --mca btl_tcp_if_include 10.200.0.0/24 --mca oob_tcp_if_include 10.200.0.0/24 \
  "$build_dir/runtime/dtrain" "${args[@]}" > "$scratch/two-hosts.out" 2>&1 ||
  { cat "$scratch/two-hosts.out"; echo "FAIL: training across two hosts failed"; exit 1; }
mpirun -np 2 --oversubscribe --bind-to none --mca pml ob1 --mca btl self,vader,tcp "$build_dir/runtime/dtrain" \
  "${args[@]}" > "$scratch/one-host.out" 2>&1 || { cat "$scratch/one-host.out"; echo "FAIL: one-host run failed"; exit 1; }
two=$(fingerprint "$scratch/two-hosts.out") one=$(fingerprint "$scratch/one-host.out")
[ -n "$two" ] && [ "$two" = "$one" ] ||
  { cat "$scratch/two-hosts.out"; echo "FAIL: weights across two hosts ($two) differ from one host's ($one)"; exit 1; }
echo "ok   trained over TCP between two hosts: same weights as on one host ($two)"
