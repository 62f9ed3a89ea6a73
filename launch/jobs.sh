#!/usr/bin/env bash
# A pool of JOBS background jobs for launch/study_sampling.sh and launch/transfer.sh
# (sourced). Each job runs in a slot 0..JOBS-1, pinned to the slot's core where taskset
# exists; FAILED counts the jobs that failed.
#   start_job FUNCTION ARGS...   waits for a free slot, then runs FUNCTION ARGS... SLOT in
#                                the background
#   pinned SLOT COMMAND...       runs COMMAND on the slot's core
#   wait_jobs                    waits for every job still running
FAILED=0
declare -A PIDS=()

pinned() {
  local slot="$1"; shift
  if command -v taskset > /dev/null && [[ "$JOBS" -gt 1 ]]; then
    taskset -c "$(( slot % $(nproc) ))" "$@"
  else
    "$@"
  fi
}

start_job() {
  local s slot=0
  while [[ ${#PIDS[@]} -ge $JOBS ]]; do
    for s in "${!PIDS[@]}"; do
      if ! kill -0 "${PIDS[$s]}" 2> /dev/null; then
        wait "${PIDS[$s]}" || FAILED=$((FAILED + 1))
        unset "PIDS[$s]"
      fi
    done
    [[ ${#PIDS[@]} -ge $JOBS ]] && sleep 2
  done
  for ((s = 0; s < JOBS; s++)); do [[ -z "${PIDS[$s]:-}" ]] && { slot=$s; break; }; done
  "$@" "$slot" &
  PIDS[$slot]=$!
}

wait_jobs() {
  local s
  for s in "${!PIDS[@]}"; do wait "${PIDS[$s]}" || FAILED=$((FAILED + 1)); done
  PIDS=()
}
