#!/bin/bash
# submit_chain.sh: submit an nfschwinger run as a chain of N Slurm jobs, for
# clusters that forbid requeueing. Job k+1 depends on job k with
# --dependency=afterany, so it starts once job k has ended, however it ended
# (finished, stopped at its time limit with a checkpoint, or killed), and
# continues from out_dir/checkpoint.h5. Jobs that start after the run is
# complete see so and exit at once ("run complete", status 0). If a job
# fails (exit status other than 0 and 75), it cancels the chain's pending
# jobs.
#
# Usage, from the directory holding params.toml and the nfschwinger binary:
#
#   slurm/submit_chain.sh N [PARAMS.toml [SCRIPT [SBATCH OPTIONS...]]]
#
#   N          number of jobs (choose N × time ≥ the run's length)
#   PARAMS     parameter file, default params.toml
#   SCRIPT     batch script, default: nfschwinger.sbatch beside this file;
#              usually the output of `nfschwinger slurm params.toml`
#   OPTIONS    passed to every sbatch, e.g. --partition=long
#
# Environment: NFSCHWINGER_CHAIN names the jobs (default
# nfschwinger-chain-DATE-PID); it must be unique among your jobs, since a
# failing job cancels the pending jobs of that name.
#
# Prints the job ids, one a line, on stdout.

set -euo pipefail

usage() {
	sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

[ $# -ge 1 ] || usage
case $1 in -h | --help) usage ;; esac
n=$1
case $n in '' | *[!0-9]*) echo "submit_chain.sh: N must be a positive integer, got '$n'" >&2; exit 2 ;; esac
[ "$n" -ge 1 ] || { echo "submit_chain.sh: N must be ≥ 1" >&2; exit 2; }
params=${2:-params.toml}
script=${3:-$(dirname "$0")/nfschwinger.sbatch}
shift $(($# < 3 ? $# : 3))

[ -f "$params" ] || { echo "submit_chain.sh: no parameter file $params (submit from the run directory)" >&2; exit 2; }
[ -f "$script" ] || { echo "submit_chain.sh: no batch script $script" >&2; exit 2; }

chain=${NFSCHWINGER_CHAIN:-nfschwinger-chain-$(date +%Y%m%d-%H%M%S)-$$}

prev=
for ((k = 1; k <= n; k++)); do
	dep=()
	if [ -n "$prev" ]; then
		dep=(--dependency="afterany:$prev")
	fi
	# --no-requeue overrides the script's #SBATCH --requeue; the chain,
	# not requeueing, carries the run on.
	id=$(sbatch --parsable --no-requeue --job-name="$chain" \
		--export="ALL,NFSCHWINGER_CHAIN=$chain" "${dep[@]}" "$@" "$script" "$params")
	id=${id%%;*} # --parsable prints "id" or "id;cluster"
	echo "$id"
	prev=$id
done
echo "submit_chain.sh: submitted $n jobs as chain $chain" >&2
