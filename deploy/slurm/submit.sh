#!/usr/bin/env bash
# Submits an audit as a Slurm job array of N shards (task ids 0..N-1 = the shard indices), then the merge
# with the run's shortcut check, which starts when every task has ended (afterany: the merge itself
# checks each shard and reports missing or unfinished ones).
# Usage, from the folder that holds config.yml, models/ and data/:
#   OUT=/shared/tumor-audit deploy/slurm/submit.sh [-c CPUS] [-m MEM] [-t TIME] [-p PARTITION] N [RUN]
#   -c CPUS       CPUs per task (libtorch threads); env CPUS. Default: 4, or fewer when the partition's
#                 largest node has fewer.
#   -m MEM        memory per task, as sbatch --mem takes it (8G, 4000M); env MEM. Default: 8G, or the
#                 largest node's memory when it has less (as Slurm knows it: RealMemory in slurm.conf).
#   -t TIME       time limit per task, as sbatch --time takes it (04:00:00); env TIME. Default: the
#                 partition's default.
#   -p PARTITION  env PARTITION. Default: the cluster's default partition.
# A request no node of the partition can hold is refused here (exit 2) instead of pending forever.
# RUN defaults to audit-<UTC time>; TUMOR_AUDIT and AUDIT_ARGS are passed on to the tasks. The merge
# gets the tasks' resources: the shortcut check runs the model.
# To rerun failed tasks: sbatch --array=<their ids> with RUN, SHARDS and OUT as printed below, then the
# merge again (both commands are printed).
set -euo pipefail

usage() {
    echo "usage: submit.sh [-c CPUS] [-m MEM] [-t TIME] [-p PARTITION] N_SHARDS [RUN_NAME]" >&2
    exit 2
}
cpus=${CPUS:-}
mem=${MEM:-}
time_limit=${TIME:-}
partition=${PARTITION:-}
while getopts "c:m:t:p:h" opt; do
    case $opt in
    c) cpus=$OPTARG ;;
    m) mem=$OPTARG ;;
    t) time_limit=$OPTARG ;;
    p) partition=$OPTARG ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] && [ $# -le 2 ] || usage
shards=$1
run=${2:-audit-$(date -u +%Y%m%dT%H%M%SZ)}
here=$(cd "$(dirname "$0")" && pwd)

refuse() {
    echo "submit.sh: $*" >&2
    exit 2
}
case $shards in
'' | *[!0-9]*) refuse "N_SHARDS must be a number, found '$shards'" ;;
esac
[ "$shards" -ge 1 ] || refuse "N_SHARDS must be at least 1"
case $cpus in
'' | [1-9] | [1-9][0-9] | [1-9][0-9][0-9]) ;;
*) refuse "CPUS must be a whole number from 1, found '$cpus'" ;;
esac

# Memory as sbatch takes it (a number with K, M, G or T; no unit = M), in MB.
mem_mb() {
    local v=${1%[KkMmGgTt]} unit=${1##*[0-9]}
    case $v in '' | *[!0-9]*) return 1 ;; esac
    case $unit in
    K | k) echo $((v / 1024)) ;;
    '' | M | m) echo "$v" ;;
    G | g) echo $((v * 1024)) ;;
    T | t) echo $((v * 1024 * 1024)) ;;
    *) return 1 ;;
    esac
}
if [ -n "$mem" ]; then
    mem_mb "$mem" > /dev/null || refuse "MEM must be a size such as 8G or 4000M, found '$mem'"
fi

# The partition's nodes as Slurm knows them: the largest CPU count and memory (MB) of one node.
part_args=()
[ -z "$partition" ] || part_args=(--partition "$partition")
nodes=$(sinfo -h -N "${part_args[@]}" -o '%P %c %m') || refuse "sinfo cannot list the nodes${partition:+ of partition $partition}"
if [ -z "$partition" ]; then
    # the default partition is marked with '*'
    nodes=$(awk '$1 ~ /\*$/' <<< "$nodes")
fi
[ -n "$nodes" ] || refuse "no node in ${partition:-the default partition} (sinfo lists none)"
max_cpus=$(awk '{ c = $2 + 0; if (c > m) m = c } END { print m + 0 }' <<< "$nodes")
max_mem=$(awk '{ v = $3 + 0; if (v > m) m = v } END { print m + 0 }' <<< "$nodes")
where=${partition:-the default partition}

if [ -z "$cpus" ]; then
    cpus=$((max_cpus < 4 ? max_cpus : 4))
    [ "$cpus" -ge 1 ] || cpus=1
elif [ "$cpus" -gt "$max_cpus" ]; then
    refuse "$cpus CPUs per task, but the largest node of $where has $max_cpus: the tasks would pend forever; use -c $max_cpus or fewer"
fi
if [ -z "$mem" ]; then
    mem=$((max_mem < 8192 ? max_mem : 8192))M
elif [ "$(mem_mb "$mem")" -gt "$max_mem" ]; then
    refuse "--mem=$mem per task, but the largest node of $where has ${max_mem}M: the tasks would pend forever; use -m ${max_mem}M or less"
fi

export RUN=$run SHARDS=$shards OUT=${OUT:-out}
resources=(--cpus-per-task="$cpus" --mem="$mem")
[ -z "$time_limit" ] || resources+=(--time="$time_limit")
resources+=("${part_args[@]}")
mkdir -p "$OUT"
array=$(sbatch --parsable --array="0-$((shards - 1))" "${resources[@]}" --export=ALL "$here/audit-shard.sbatch")
array=${array%%;*} # --parsable prints "jobid[;cluster]"
merge=$(sbatch --parsable --dependency="afterany:$array" "${resources[@]}" --export=ALL "$here/merge.sbatch")
merge=${merge%%;*}
echo "run $run: array job $array ($shards shards, ${resources[*]}), merge job $merge -> $OUT/audit.sqlite"
echo "to rerun failed tasks K,L: RUN=$run SHARDS=$shards OUT=$OUT sbatch --array=K,L ${resources[*]} --export=ALL $here/audit-shard.sbatch"
echo "  then: RUN=$run SHARDS=$shards OUT=$OUT sbatch ${resources[*]} --export=ALL $here/merge.sbatch"
