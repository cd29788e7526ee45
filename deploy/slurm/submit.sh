#!/usr/bin/env bash
# Submits an audit as a Slurm job array of N shards, then the merge, which starts when every task has
# ended (afterany: the merge itself checks each shard and reports missing or unfinished ones).
# Usage, from the folder that holds config.yml, models/ and data/:
#   OUT=/shared/tumor-audit deploy/slurm/submit.sh N [RUN]
# RUN defaults to audit-<UTC time>; TUMOR_AUDIT and AUDIT_ARGS are passed on to the tasks.
set -euo pipefail

shards=${1:?usage: submit.sh N_SHARDS [RUN_NAME]}
run=${2:-audit-$(date -u +%Y%m%dT%H%M%SZ)}
here=$(cd "$(dirname "$0")" && pwd)
export RUN=$run SHARDS=$shards OUT=${OUT:-out}

case $shards in
'' | *[!0-9]*) echo "N_SHARDS must be a number, found '$shards'" >&2; exit 1 ;;
esac
if [ "$shards" -lt 1 ]; then
    echo "N_SHARDS must be at least 1" >&2
    exit 1
fi
mkdir -p "$OUT"
array=$(sbatch --parsable --array="0-$((shards - 1))" --export=ALL "$here/audit-shard.sbatch")
array=${array%%;*} # --parsable prints "jobid[;cluster]"
merge=$(sbatch --parsable --dependency="afterany:$array" --export=ALL "$here/merge.sbatch")
merge=${merge%%;*}
echo "run $run: array job $array ($shards shards), merge job $merge -> $OUT/audit.sqlite"
