#!/bin/bash
# Submit the VASP array for an emit-jobs directory, and optionally collect-bridge after it.
#
# Usage: pipelines/slurm/submit_vasp_jobs.sh JOBS_DIR "VASP COMMAND" [PER_TASK] [-- extra sbatch args]
#   e.g. submit_vasp_jobs.sh work/bridge/jobs "srun vasp_std" 20 -- --partition=cpu --account=proj
# Environment: OMNI_ENV (file sourced in the job), OMNI_COLLECT_STORE (if set, a collect-bridge
# job into that store runs after the array with afterany), OMNI_MAX_PARALLEL (array throttle),
# DRY_RUN=1 (print the sbatch commands only).
# The array covers every job dir (sorted, as vasp_array.sbatch lists them); finished ones are
# skipped inside the job, so resubmitting the same directory only redoes unfinished work.
set -euo pipefail
if [[ $# -lt 2 ]]; then sed -n '2,11p' "$0" >&2; exit 2; fi
JOBS_DIR=$(cd "$1" && pwd)
export OMNI_JOBS_DIR="${JOBS_DIR}"
export OMNI_VASP_CMD="$2"
export OMNI_JOBS_PER_TASK="${3:-1}"
shift $(( $# >= 3 ? 3 : 2 ))
[[ "${1:-}" == "--" ]] && shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

N=$(find "${JOBS_DIR}" -mindepth 2 -maxdepth 2 -name job.json -printf '%h\n' | grep -vc '/\.[^/]*$' || true)
[[ "${N}" -gt 0 ]] || { echo "submit_vasp_jobs.sh: no job dirs under ${JOBS_DIR}" >&2; exit 1; }
TASKS=$(( (N + OMNI_JOBS_PER_TASK - 1) / OMNI_JOBS_PER_TASK ))
ARRAY="0-$(( TASKS - 1 ))${OMNI_MAX_PARALLEL:+%${OMNI_MAX_PARALLEL}}"
mkdir -p "${JOBS_DIR}/logs"

run() { if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "$@" >&2; echo >&2; echo 0; else "$@"; fi; }
JOBID=$(run sbatch --parsable --export=ALL --array="${ARRAY}" --output="${JOBS_DIR}/logs/vasp-%A_%a.out" \
  "$@" "${HERE}/vasp_array.sbatch" | tail -n 1 | cut -d';' -f1)  # --parsable may print "ID;CLUSTER"
echo "vasp array ${JOBID}: ${N} job dirs, ${OMNI_JOBS_PER_TASK} per task, array ${ARRAY}" >&2
if [[ -n "${OMNI_COLLECT_STORE:-}" ]]; then
  # The collect job waits for this array only: a --dependency among the extra arguments (e.g.
  # run_corpus.sh's afterok on the select job) is the array's, and would override afterany here.
  collect_args=()
  skip=0
  for a in "$@"; do
    if [[ ${skip} == 1 ]]; then skip=0; continue; fi
    case "${a}" in --dependency=*|-d?*) ;; --dependency|-d) skip=1 ;; *) collect_args+=("${a}") ;; esac
  done
  CMD="omni-data jobs $(printf '%q' "${JOBS_DIR}"); omni-data collect-bridge $(printf '%q' "${JOBS_DIR}") --out $(printf '%q' "${OMNI_COLLECT_STORE}")"
  [[ -n "${OMNI_ENV:-}" ]] && CMD="source $(printf '%q' "${OMNI_ENV}"); ${CMD}"
  run sbatch --parsable --dependency="afterany:${JOBID}" --output="${JOBS_DIR}/logs/collect-%j.out" \
    ${collect_args[@]+"${collect_args[@]}"} --wrap="${CMD}" | tail -n 1 >&2
fi
echo "${JOBID}"
