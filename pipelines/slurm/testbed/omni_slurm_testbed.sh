#!/usr/bin/env bash
# A one-node Slurm on this machine, for tests and CI: real slurmctld + slurmd + munged.
#
#   omni_slurm_testbed.sh start DIR    install Slurm if missing (apt-get, root only), write the
#                                      config under DIR, start munged, slurmctld and slurmd, wait
#                                      until the node is idle; prints `export SLURM_CONF=...`
#   omni_slurm_testbed.sh stop DIR     cancel the testbed's jobs, stop exactly the daemons that
#                                      `start DIR` started (pids in DIR/pids), keep the logs
#   omni_slurm_testbed.sh env DIR      print `export SLURM_CONF=DIR/etc/slurm.conf`
#
# Every client (sbatch, squeue, dask-jobqueue, omni-data jobs) finds this cluster through the
# SLURM_CONF environment variable. The node is this host with its real CPUs and memory
# (`slurmd -C`), one partition `debug`, select/cons_tres with CR_Core_Memory (so --mem and
# --cpus-per-task are enforced by the scheduler), proctrack/linuxproc and task/none (no cgroups
# needed, so it runs in containers). No slurmdbd: sacct is unavailable, finished jobs stay in
# slurmctld's memory for MinJobAge seconds and in DIR/jobcomp.txt.
#
# Environment: OMNI_SLURM_TIMEOUT (seconds to wait for the node, default 60),
# OMNI_SLURM_NO_INSTALL=1 (never apt-get). Exit codes: 0 ok, 3 Slurm not installed and not
# installable here, or not root (slurmd needs root), 1 any other failure (the message names the log).
set -euo pipefail

die() { echo "omni_slurm_testbed: $1" >&2; exit "${2:-1}"; }
usage() { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[[ $# -eq 2 ]] || usage
CMD="$1"
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
ETC="${DIR}/etc"
CONF="${ETC}/slurm.conf"
PIDS="${DIR}/pids"
TIMEOUT="${OMNI_SLURM_TIMEOUT:-60}"

have_slurm() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null; }

install_slurm() {
  have_slurm && return 0
  [[ "${OMNI_SLURM_NO_INSTALL:-0}" != 1 ]] || die "Slurm is not installed and OMNI_SLURM_NO_INSTALL=1" 3
  [[ "$(id -u)" == 0 ]] || die "Slurm is not installed and this user is not root (apt-get install slurmctld slurmd slurm-client munge)" 3
  command -v apt-get >/dev/null || die "Slurm is not installed and there is no apt-get here" 3
  echo "omni_slurm_testbed: installing slurmctld slurmd slurm-client munge" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq slurmctld slurmd slurm-client munge >"${DIR}/apt.log" 2>&1 \
    || { apt-get update -qq >>"${DIR}/apt.log" 2>&1 && apt-get install -y -qq slurmctld slurmd slurm-client munge >>"${DIR}/apt.log" 2>&1; } \
    || die "apt-get install of Slurm failed; see ${DIR}/apt.log" 3
  have_slurm || die "Slurm still missing after apt-get; see ${DIR}/apt.log" 3
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# One `slurmd -C` field, e.g. node_field CPUs
node_field() { slurmd -C | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }

write_config() {
  mkdir -p "${ETC}" "${DIR}/state" "${DIR}/spool" "${DIR}/log" "${DIR}/munge"
  chmod 755 "${DIR}/munge"  # munged wants the socket dir searchable; the key stays 0400
  local node cpus boards sockets cores threads mem
  node=$(hostname -s)
  cpus=$(node_field CPUs); boards=$(node_field Boards); sockets=$(node_field SocketsPerBoard)
  cores=$(node_field CoresPerSocket); threads=$(node_field ThreadsPerCore); mem=$(node_field RealMemory)
  [[ -n "${cpus}" && -n "${mem}" ]] || die "slurmd -C did not report CPUs and RealMemory"
  mem=$(( mem * 95 / 100 ))  # leave room for the OS, else the node drains with "Low RealMemory"
  cat >"${CONF}" <<EOF
# Written by pipelines/slurm/testbed/omni_slurm_testbed.sh: a one-node test cluster.
ClusterName=omnitest
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=$(id -un)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${DIR}/munge/munge.socket
StateSaveLocation=${DIR}/state
SlurmdSpoolDir=${DIR}/spool
SlurmctldPidFile=${DIR}/slurmctld.pid
SlurmdPidFile=${DIR}/slurmd.pid
SlurmctldLogFile=${DIR}/log/slurmctld.log
SlurmdLogFile=${DIR}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=${DIR}/jobcomp.txt
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} Boards=${boards:-1} SocketsPerBoard=${sockets:-1} CoresPerSocket=${cores:-${cpus}} ThreadsPerCore=${threads:-1} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=$(( mem / cpus ))
EOF
  # No cgroup is used for jobs (proctrack/linuxproc, task/none); slurmd 22.05 still loads a
  # cgroup plugin at start, and must not mount anything.
  printf 'CgroupPlugin=autodetect\nCgroupAutomount=no\nConstrainCores=no\nConstrainRAMSpace=no\n' >"${ETC}/cgroup.conf"
  printf '' >"${ETC}/plugstack.conf"
  if [[ ! -s "${DIR}/munge/munge.key" ]]; then
    dd if=/dev/urandom of="${DIR}/munge/munge.key" bs=1 count=1024 status=none
    chmod 400 "${DIR}/munge/munge.key"
  fi
}

# start_daemon NAME LOGFILE CMD... : start in the foreground mode under setsid, remember the pid
start_daemon() {
  local name="$1" log="$2"; shift 2
  setsid "$@" >"${log}" 2>&1 < /dev/null &
  local pid=$!
  printf '%s %s\n' "${name}" "${pid}" >>"${PIDS}"
  sleep 0.5
  kill -0 "${pid}" 2>/dev/null || die "${name} exited at once; see ${log}"
}

wait_idle() {
  local deadline=$(( $(date +%s) + TIMEOUT )) state=""
  while (( $(date +%s) < deadline )); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)
    [[ "${state}" == idle ]] && return 0
    sleep 1
  done
  die "the node is not idle after ${TIMEOUT}s (state '${state:-no answer}'); see ${DIR}/log/slurmctld.log and ${DIR}/log/slurmd.log"
}

start() {
  install_slurm
  [[ "$(id -u)" == 0 ]] || die "slurmd must run as root to start jobs; run this as root (CI does)" 3
  [[ ! -s "${PIDS}" ]] || die "${PIDS} exists: a testbed may still run here; run '$0 stop ${DIR}' first"
  write_config
  export SLURM_CONF="${CONF}"
  : >"${PIDS}"
  trap 'stop >/dev/null 2>&1' EXIT  # a failed start stops what it started
  start_daemon munged "${DIR}/log/munged.out" munged -F --force --socket="${DIR}/munge/munge.socket" \
    --key-file="${DIR}/munge/munge.key" --pid-file="${DIR}/munge/munged.pid" \
    --seed-file="${DIR}/munge/munged.seed" --log-file="${DIR}/log/munged.log"
  start_daemon slurmctld "${DIR}/log/slurmctld.out" slurmctld -D -i -f "${CONF}"
  start_daemon slurmd "${DIR}/log/slurmd.out" slurmd -D -f "${CONF}" -N "$(hostname -s)"
  wait_idle
  trap - EXIT
  echo "omni_slurm_testbed: node $(hostname -s) idle ($(sinfo -h -N -o '%c CPUs, %m MB')); daemons $(awk '{printf "%s=%s ", $1, $2}' "${PIDS}")" >&2
  echo "export SLURM_CONF=${CONF}"
}

stop() {
  [[ -s "${PIDS}" ]] || { echo "omni_slurm_testbed: nothing to stop in ${DIR}" >&2; return 0; }
  export SLURM_CONF="${CONF}"
  local name pid
  scancel --full --quiet $(squeue -h -o '%A' 2>/dev/null) 2>/dev/null || true
  # Stop in reverse order of start: slurmd, slurmctld, munged.
  tac "${PIDS}" | while read -r name pid; do
    if kill -0 "${pid}" 2>/dev/null; then
      kill -TERM "${pid}" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.2; done
      kill -0 "${pid}" 2>/dev/null && { echo "omni_slurm_testbed: ${name} ${pid} ignored SIGTERM; SIGKILL" >&2; kill -KILL "${pid}" 2>/dev/null || true; }
    fi
    echo "omni_slurm_testbed: stopped ${name} (pid ${pid})" >&2
  done
  mv "${PIDS}" "${PIDS}.stopped"
}

case "${CMD}" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=${CONF}" ;;
  *) usage ;;
esac
