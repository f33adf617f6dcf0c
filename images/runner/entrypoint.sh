#!/usr/bin/env bash
# runnerscale-entrypoint: the entrypoint of the runner image used by runnerscale's Docker backend.
#
# The backend starts one container per runner and passes:
#   ACTIONS_RUNNER_INPUT_JITCONFIG  the runner's one-job JIT configuration (secret; required),
#                            in the variable the official runner reads it from
#   RUNNERSCALE_RUNNER_NAME  the runner's name (informational)
#   RUNNERSCALE_POOL         the pool the runner belongs to (informational)
#
# What it does, in order:
#   1. Reads ACTIONS_RUNNER_INPUT_JITCONFIG into a non-exported shell variable and unsets the
#      environment variable, so that no extension script inherits it. The value is never
#      printed.
#   2. Runs every *.sh in $RUNNERSCALE_ENTRYPOINT_D (default /etc/runnerscale/entrypoint.d) in
#      lexical order, each as its own process (`bash SCRIPT`). A missing or empty directory is
#      fine. Scripts see RUNNER_HOME, RUNNERSCALE_RUNNER_NAME and RUNNERSCALE_POOL. They can pass
#      environment variables and PATH entries to jobs through the official runner's files:
#        "$RUNNER_HOME/.env"   KEY=VALUE lines, set in the runner's (and so the jobs') environment
#        "$RUNNER_HOME/.path"  the PATH jobs get
#      A script that fails stops the container (exit 3): a runner on a half-prepared host must
#      not take a job.
#   3. Starts "$RUNNER_HOME/run.sh" (RUNNER_HOME defaults to /home/runner) with
#      ACTIONS_RUNNER_INPUT_JITCONFIG in its environment, and waits for it. Not --jitconfig: a
#      command line is readable by every user of the host (/proc/PID/cmdline), an environment
#      only by the same user and root. The official runner reads every option --NAME from
#      ACTIONS_RUNNER_INPUT_NAME and removes those variables from its environment, so jobs do
#      not inherit it (CommandSettings.cs in actions/runner).
#
# SIGTERM or SIGINT (docker stop) is forwarded to the running step as SIGTERM: the official
# run.sh turns it into a graceful stop that cancels the job. During the extension scripts, the
# script's whole process group is stopped and the runner is never started.
#
# Exit codes:
#   0     the runner finished; or a stop was requested (SIGTERM/SIGINT) and everything ended
#   2     ACTIONS_RUNNER_INPUT_JITCONFIG is missing or empty
#   3     an extension script failed
#   4     $RUNNER_HOME/run.sh is missing or not executable
#   else  the runner's own exit code
#
# Never add `set -x` here: it would print the JIT configuration.

set +o xtrace # even if xtrace came in through SHELLOPTS or `bash -x`
set -euo pipefail

readonly PROG=runnerscale-entrypoint

log() {
    printf '%s: %s\n' "$PROG" "$*" >&2
}

# Signals: remember the stop and forward it to whatever runs now. `child` is the pid of the
# running step (its own process group), `child_group` whether to signal the whole group.
stop_requested=0
interrupted=0
child=""
child_group=0

forward_stop() {
    if [[ -z "$child" ]]; then
        return 0
    fi
    if ((child_group)); then
        kill -TERM -- "-$child" 2>/dev/null || true
    else
        kill -TERM -- "$child" 2>/dev/null || true
    fi
}

# shellcheck disable=SC2317 # called from the traps below, which shellcheck 0.9 does not follow
on_signal() {
    interrupted=1
    if ((stop_requested == 0)); then
        log "received SIG$1: stopping"
    fi
    stop_requested=1
    forward_stop
}

trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

# Runs "$@" in the background in its own process group and waits until it is really gone (a
# trapped signal interrupts `wait`). Sets child_status. $1 of the function: 1 to stop the whole
# process group on a signal, 0 to signal only the process.
run_step() {
    local group="$1"
    shift
    # Job control on only while forking: the step gets its own process group, so it can be
    # stopped as a whole and does not get the terminal's SIGINT twice; and the shell prints no
    # job notices.
    set -m
    "$@" &
    child=$!
    set +m
    child_group="$group"
    if ((stop_requested)); then
        # The signal came between the last check and the fork: the trap saw no child.
        forward_stop
    fi
    while :; do
        interrupted=0
        child_status=0
        wait "$child" || child_status=$?
        if ((interrupted == 0)); then
            break
        fi
    done
    child=""
    child_group=0
}

# 1. The secret: keep it in an unexported variable, drop it from the environment.
jit_config="${ACTIONS_RUNNER_INPUT_JITCONFIG-}"
export -n jit_config # in case a variable of that name came in through the environment
unset ACTIONS_RUNNER_INPUT_JITCONFIG
if [[ -z "$jit_config" ]]; then
    log "ACTIONS_RUNNER_INPUT_JITCONFIG is not set: this image is started by runnerscale's" \
        "docker backend, which passes the runner's one-job configuration in it"
    exit 2
fi

RUNNER_HOME="${RUNNER_HOME:-/home/runner}"
RUNNERSCALE_ENTRYPOINT_D="${RUNNERSCALE_ENTRYPOINT_D:-/etc/runnerscale/entrypoint.d}"
export RUNNER_HOME RUNNERSCALE_ENTRYPOINT_D
# Without it, the official run.sh dies on SIGTERM and leaves the listener running; with it, it
# passes the signal on as SIGINT, a graceful stop that cancels the job.
export RUNNER_MANUALLY_TRAP_SIG="${RUNNER_MANUALLY_TRAP_SIG:-1}"

# 2. Extension scripts, in lexical (byte) order whatever the locale.
list_scripts() {
    local LC_ALL=C
    shopt -s nullglob
    scripts=("$RUNNERSCALE_ENTRYPOINT_D"/*.sh)
    shopt -u nullglob
}

scripts=()
if [[ -d "$RUNNERSCALE_ENTRYPOINT_D" ]]; then
    list_scripts
fi
for script in "${scripts[@]}"; do
    if ((stop_requested)); then
        break
    fi
    log "running $script"
    run_step 1 bash "$script"
    if ((stop_requested)); then
        break
    fi
    if ((child_status != 0)); then
        log "$script failed with exit code $child_status: not starting the runner"
        exit 3
    fi
done
if ((stop_requested)); then
    log "stopped before the runner started"
    exit 0
fi

# 3. The runner.
run_sh="$RUNNER_HOME/run.sh"
if [[ ! -f "$run_sh" || ! -x "$run_sh" ]]; then
    log "$run_sh is missing or not executable: is the official runner unpacked in RUNNER_HOME?"
    exit 4
fi

log "starting runner ${RUNNERSCALE_RUNNER_NAME:-(unnamed)} of pool ${RUNNERSCALE_POOL:-(none)}"
# An assignment before a function call is exported to what the function starts, for this call
# only: run.sh alone gets the secret, in its environment, never on its command line.
ACTIONS_RUNNER_INPUT_JITCONFIG="$jit_config" run_step 0 "$run_sh"
if ((stop_requested)); then
    log "runner stopped (exit code $child_status)"
    exit 0
fi
log "runner exited with code $child_status"
exit "$child_status"
