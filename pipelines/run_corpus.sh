#!/usr/bin/env bash
# Build the full Omni corpus and train on it: a chain of Slurm jobs linked with --dependency.
#
#   ingest (array, one element per dataset)  --afterok-->  describe_select
#   describe_select: describe, select-bridge, emit-jobs, then calls `run_corpus.sh --from vasp`:
#   vasp (the recompute array template)  --afterany-->  collect  --afterok-->  train
#
# The VASP array can only be sized after emit-jobs has written the job directories, which is why
# describe_select re-enters this script for the second half of the chain.
#
# Usage: pipelines/run_corpus.sh [--from ingest|select|vasp|collect|train] [--to STAGE]
#                                [--after JOBID] [--dry-run]
# Environment: OMNI_CORPUS, OMNI_DATA_ROOT, OMNI_WORK (override corpus.yaml), OMNI_PARTITION,
# OMNI_GPU_PARTITION, OMNI_ACCOUNT, OMNI_ENV (file sourced in every job), OMNI_VASP_CMD (the
# command that runs VASP in one job directory, e.g. "srun vasp_std"), OMNI_SBATCH_ARGS (extra
# arguments for every sbatch call).
set -euo pipefail

OMNI_REPO="${OMNI_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export OMNI_REPO
STAGES=(ingest select vasp collect train)
FROM=ingest
TO=train
AFTER=""
DRY_RUN=0

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --from) FROM="$2"; shift 2 ;;
    --to) TO="$2"; shift 2 ;;
    --after) AFTER="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_corpus.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

stage_index() {
  local i
  for i in "${!STAGES[@]}"; do [[ "${STAGES[$i]}" == "$1" ]] && { echo "$i"; return 0; }; done
  echo "run_corpus.sh: unknown stage '$1' (one of: ${STAGES[*]})" >&2
  exit 2
}
FROM_I=$(stage_index "${FROM}")
TO_I=$(stage_index "${TO}")
wanted() { local i; i=$(stage_index "$1"); [[ $i -ge $FROM_I && $i -le $TO_I ]]; }

corpus() { python "${OMNI_REPO}/pipelines/corpus.py" "$@"; }
WORK=$(corpus get work_dir)
LOGS="${WORK}/logs"
[[ ${DRY_RUN} == 1 ]] || mkdir -p "${LOGS}"

# submit DEPENDENCY [sbatch args...] -> prints the job id
submit() {
  local dep="$1"; shift
  local cmd=(sbatch --parsable --export=ALL)
  [[ -n "${dep}" ]] && cmd+=("--dependency=${dep}")
  [[ -n "${OMNI_ACCOUNT:-}" ]] && cmd+=("--account=${OMNI_ACCOUNT}")
  # shellcheck disable=SC2206  # word splitting of extra arguments is intended
  [[ -n "${OMNI_SBATCH_ARGS:-}" ]] && cmd+=(${OMNI_SBATCH_ARGS})
  cmd+=("$@")
  if [[ ${DRY_RUN} == 1 ]]; then
    printf '%q ' "${cmd[@]}" >&2; echo >&2
    echo $(( ${PREV:-1000} + 1 ))  # a stand-in job id (submit runs in a subshell)
  else
    "${cmd[@]}" | cut -d';' -f1
  fi
}

PREV="${AFTER}"
dep_on() { [[ -n "${PREV}" ]] && echo "$1:${PREV}" || true; }
partition() { [[ -n "${1:-}" ]] && echo "--partition=$1" || true; }

if wanted ingest; then
  N=$(corpus count --ingest)
  PAR=$(corpus get ingest.max_parallel_datasets)
  PREV=$(submit "$(dep_on afterok)" --array="0-$((N - 1))%${PAR}" $(partition "${OMNI_PARTITION:-}") \
    --output="${LOGS}/ingest-%A_%a.out" "${OMNI_REPO}/pipelines/slurm/ingest.sbatch")
  echo "ingest: job ${PREV} (${N} datasets, ${PAR} at a time)"
fi

if wanted select; then
  # describe_select re-enters this script with --from vasp; keep the caller's --to.
  PREV=$(submit "$(dep_on afterok)" $(partition "${OMNI_PARTITION:-}") --output="${LOGS}/select-%j.out" \
    --export="ALL,OMNI_TO=${TO},OMNI_NO_CHAIN=$([[ ${TO_I} -le $(stage_index select) ]] && echo 1 || echo 0)" \
    "${OMNI_REPO}/pipelines/slurm/describe_select.sbatch")
  echo "describe+select+emit: job ${PREV} (submits vasp -> collect -> train when it finishes)"
  exit 0
fi

if wanted vasp; then
  # The VASP array is the recompute part's template, pipelines/slurm/vasp_array.sbatch, submitted
  # by its helper submit_vasp_jobs.sh: the array is sized to the emitted job dirs, finished dirs
  # are skipped inside the job and failures land in JOBS/failures.tsv.
  JOBS_DIR="${WORK}/bridge/jobs"
  : "${OMNI_VASP_CMD:?set OMNI_VASP_CMD to the command that runs VASP in a job directory}"
  extra=()
  [[ -n "${PREV}" ]] && extra+=("--dependency=afterok:${PREV}")
  [[ -n "${OMNI_PARTITION:-}" ]] && extra+=("--partition=${OMNI_PARTITION}")
  [[ -n "${OMNI_ACCOUNT:-}" ]] && extra+=("--account=${OMNI_ACCOUNT}")
  # shellcheck disable=SC2206  # word splitting of extra arguments is intended (as in submit)
  [[ -n "${OMNI_SBATCH_ARGS:-}" ]] && extra+=(${OMNI_SBATCH_ARGS})
  helper=("${OMNI_REPO}/pipelines/slurm/submit_vasp_jobs.sh" "${JOBS_DIR}" "${OMNI_VASP_CMD}"
          "$(corpus get bridge.jobs_per_array_task)" -- "${extra[@]}")
  export OMNI_MAX_PARALLEL="$(corpus get bridge.array_parallel)"
  if [[ ${DRY_RUN} == 1 ]]; then
    printf '%q ' "${helper[@]}" >&2; echo >&2
    PREV=$(( ${PREV:-1000} + 1 ))
  else
    N_JOBS=$( (find "${JOBS_DIR}" -mindepth 2 -maxdepth 2 -name job.json 2>/dev/null || true) | wc -l)
    [[ ${N_JOBS} -gt 0 ]] || { echo "run_corpus.sh: no job directories under ${JOBS_DIR}; run the select stage" >&2; exit 1; }
    PREV=$("${helper[@]}" | tail -n 1 | cut -d';' -f1)
  fi
  echo "vasp: job ${PREV} (array over the job dirs in ${JOBS_DIR})"
fi

if wanted collect; then
  PREV=$(submit "$(dep_on afterany)" $(partition "${OMNI_PARTITION:-}") --output="${LOGS}/collect-%j.out" \
    "${OMNI_REPO}/pipelines/slurm/collect.sbatch")
  echo "collect: job ${PREV}"
fi

if wanted train; then
  PREV=$(submit "$(dep_on afterok)" $(partition "${OMNI_GPU_PARTITION:-}") \
    --nodes="$(corpus get train.nodes)" --gpus-per-node="$(corpus get train.gpus_per_node)" \
    --output="${LOGS}/train-%j.out" "${OMNI_REPO}/pipelines/slurm/train.sbatch")
  echo "train: job ${PREV}"
fi
