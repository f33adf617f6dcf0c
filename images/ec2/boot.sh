#!/usr/bin/env bash
# runnerscale-boot: starts the one runner of an EC2 instance that runnerscale's ec2 backend
# launched. Installed as /usr/local/sbin/runnerscale-boot and run once at boot, as root, by
# runnerscale-boot.service; when it exits, the unit powers the instance off, and the launch
# template's "terminate on shutdown" ends the instance. See docs/backends/ec2.md.
#
# What it does, in order:
#   1. Reads its instance id and region from the instance metadata service (IMDSv2: a session
#      token first), and the SSM parameter prefix (below).
#   2. Starts the interruption watcher in the background: every RUNNERSCALE_NOTICE_INTERVAL
#      seconds it asks IMDS for meta-data/spot/instance-action and
#      meta-data/events/recommendations/rebalance; on a notice it tags its own instance
#      runnerscale:interruption=spot-interruption (or =rebalance), once per kind, which tells
#      the daemon to give the instance no new job.
#   3. Reads the SecureString parameter <prefix>/<instance-id> with decryption, through the
#      aws CLI and the instance role. The daemon writes it right after the launch, so it waits
#      for it (RUNNERSCALE_PARAMETER_TIMEOUT seconds, trying every 2). Then deletes it: the
#      runner's one-job JIT configuration exists nowhere else any more.
#   4. Starts "$RUNNER_HOME/run.sh" (the official runner) as RUNNERSCALE_RUNNER_USER with
#      the JIT configuration in ACTIONS_RUNNER_INPUT_JITCONFIG, in its environment only: never
#      on a command line (which every user can read in /proc/PID/cmdline), never in a file, never
#      printed. The official runner reads --jitconfig from that variable and removes it from its
#      environment before it runs a job (CommandSettings.cs in actions/runner). Waits for it.
#
# The prefix: RUNNERSCALE_SSM_PREFIX if set (e.g. in /etc/runnerscale/boot.env, which the unit
# reads), else the instance tag runnerscale:ssm-prefix through IMDS (the launch template must
# allow tags in the metadata), else /runnerscale/jit, the daemon's default.
#
# Settings (environment; the defaults are the AMI's):
#   RUNNER_HOME                     /opt/actions-runner   where the official runner is unpacked
#   RUNNERSCALE_RUNNER_USER         runner                the user the runner and its jobs run as
#   RUNNERSCALE_SSM_PREFIX          (see above)
#   RUNNERSCALE_PARAMETER_TIMEOUT   600                   seconds to wait for the parameter
#   RUNNERSCALE_NOTICE_INTERVAL     5                     seconds between two notice checks
#   RUNNERSCALE_IMDS_URL            http://169.254.169.254  the metadata service (tests)
#
# SIGTERM or SIGINT (the unit stopped) before the runner starts: exits 0 without starting it.
# While the runner runs: forwarded to it as SIGTERM (with RUNNER_MANUALLY_TRAP_SIG=1 the official
# run.sh turns it into a graceful stop that cancels the job), waited for, exit 0.
#
# Exit codes:
#   0     the runner finished; or a stop was requested and everything ended
#   2     a bad setting: the prefix, the runner user, run.sh missing
#   3     the instance metadata service did not answer
#   4     the parameter could not be read within RUNNERSCALE_PARAMETER_TIMEOUT seconds
#   else  the runner's own exit code
#
# Never add `set -x` here: it would print the JIT configuration.

set +o xtrace # even if xtrace came in through SHELLOPTS or `bash -x`
set -euo pipefail
umask 077

readonly PROG=runnerscale-boot
readonly INTERRUPTION_TAG=runnerscale:interruption
readonly DEFAULT_PREFIX=/runnerscale/jit

IMDS_URL="${RUNNERSCALE_IMDS_URL:-http://169.254.169.254}"
IMDS_URL="${IMDS_URL%/}"
RUNNER_HOME="${RUNNER_HOME:-/opt/actions-runner}"
RUNNER_USER="${RUNNERSCALE_RUNNER_USER:-runner}"
PARAMETER_TIMEOUT="${RUNNERSCALE_PARAMETER_TIMEOUT:-600}"
NOTICE_INTERVAL="${RUNNERSCALE_NOTICE_INTERVAL:-5}"

log() {
    printf '%s: %s\n' "$PROG" "$*" >&2
}

# Where errors of the aws CLI go before they are logged (they never hold the parameter's value).
scratch=$(mktemp -d)
watcher=""
runner=""
stop_requested=0
interrupted=0

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    if [[ -n "$watcher" ]]; then
        kill -TERM "$watcher" 2>/dev/null || true
        wait "$watcher" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

# shellcheck disable=SC2317 # called from the traps below
on_signal() {
    interrupted=1
    if ((stop_requested == 0)); then
        log "received SIG$1: stopping"
    fi
    stop_requested=1
    if [[ -n "$runner" ]]; then
        kill -TERM "$runner" 2>/dev/null || true
    fi
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

# --- instance metadata (IMDSv2) -----------------------------------------------------------

imds_token=""
imds_token_at=0

# Refreshes the session token when it is older than 5 minutes (it lives 6 hours).
imds_refresh_token() {
    if [[ -n "$imds_token" ]] && ((SECONDS - imds_token_at < 300)); then
        return 0
    fi
    imds_token=$(curl -sSf --max-time 2 --retry 5 --retry-connrefused --retry-delay 1 \
        -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 21600" "$IMDS_URL/latest/api/token")
    imds_token_at=$SECONDS
}

# imds_get PATH: sets imds_value to the value at latest/PATH and returns 0; returns 1 when IMDS
# says 404 (no such value: no notice, no such tag), 2 when IMDS cannot be asked. (A global
# rather than output, so that the token refreshed here is kept: no subshell.)
imds_value=""
imds_get() {
    local answer status
    imds_value=""
    imds_refresh_token || return 2
    answer=$(curl -sS --max-time 2 --retry 3 --retry-connrefused --retry-delay 1 \
        -H "X-aws-ec2-metadata-token: $imds_token" -w '\n%{http_code}' \
        "$IMDS_URL/latest/$1") || return 2
    status="${answer##*$'\n'}"
    case "$status" in
        200)
            imds_value="${answer%$'\n'*}"
            ;;
        404)
            return 1
            ;;
        401)
            imds_token="" # expired: the next call gets a new one
            return 2
            ;;
        *)
            return 2
            ;;
    esac
}

# imds_require PATH: like imds_get, but a missing value ends the script (exit 3).
imds_require() {
    if ! imds_get "$1" || [[ -z "$imds_value" ]]; then
        log "cannot read $1 from the instance metadata service at $IMDS_URL:" \
            "is this an EC2 instance with IMDS enabled (and a hop limit of at least 1)?"
        exit 3
    fi
}

# --- AWS --------------------------------------------------------------------------------

# The aws CLI, in the instance's region, with the instance role's credentials (from the same
# metadata service) and no pager.
aws_cli() {
    AWS_EC2_METADATA_SERVICE_ENDPOINT="$IMDS_URL/" AWS_PAGER="" \
        aws --region "$region" "$@"
}

# The last line of what the last failed aws call printed on stderr.
aws_error() {
    local line
    line=$(grep -v '^[[:space:]]*$' "$scratch/aws-error" | tail -n 1) || true
    printf '%s' "${line:-no error message}"
}

# --- the interruption watcher (a background process; never sees the JIT configuration) ----

# shellcheck disable=SC2317 # its trap's command
watch_notices() {
    local tagged="" reason notice pause=""
    trap 'if [[ -n "$pause" ]]; then kill "$pause" 2>/dev/null; fi; exit 0' TERM
    trap - INT
    while :; do
        reason=""
        if imds_get meta-data/spot/instance-action; then
            reason=spot-interruption
        elif [[ -z "$tagged" ]] && imds_get meta-data/events/recommendations/rebalance; then
            reason=rebalance
        fi
        notice="$imds_value"
        if [[ -n "$reason" && "$reason" != "$tagged" ]]; then
            log "$reason notice ($notice): tagging $instance_id $INTERRUPTION_TAG=$reason"
            if aws_cli ec2 create-tags --resources "$instance_id" \
                --tags "Key=$INTERRUPTION_TAG,Value=$reason" 2>"$scratch/tag-error"; then
                tagged="$reason"
            else
                log "could not tag $instance_id: $(grep -v '^[[:space:]]*$' "$scratch/tag-error" | tail -n 1)"
            fi
        fi
        if [[ "$tagged" == spot-interruption ]]; then
            exit 0 # nothing comes after it
        fi
        sleep "$NOTICE_INTERVAL" &
        pause=$!
        wait "$pause" || true
        pause=""
    done
}

# --- 1. who and where ---------------------------------------------------------------------

if ! [[ "$PARAMETER_TIMEOUT" =~ ^[0-9]+$ ]]; then
    log "RUNNERSCALE_PARAMETER_TIMEOUT is '$PARAMETER_TIMEOUT': give a whole number of seconds"
    exit 2
fi
if ! [[ "$NOTICE_INTERVAL" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    log "RUNNERSCALE_NOTICE_INTERVAL is '$NOTICE_INTERVAL': give a number of seconds"
    exit 2
fi
if ! runner_uid=$(id -u "$RUNNER_USER" 2>/dev/null) || ! runner_gid=$(id -g "$RUNNER_USER"); then
    log "there is no user '$RUNNER_USER' (RUNNERSCALE_RUNNER_USER) to run the runner as"
    exit 2
fi
if ((runner_uid == 0)); then
    log "RUNNERSCALE_RUNNER_USER is '$RUNNER_USER', which is root: jobs must not run as root"
    exit 2
fi
run_sh="$RUNNER_HOME/run.sh"
if [[ ! -f "$run_sh" || ! -x "$run_sh" ]]; then
    log "$run_sh is missing or not executable: is the official runner unpacked in RUNNER_HOME?"
    exit 2
fi

imds_require meta-data/instance-id
instance_id="$imds_value"
imds_require meta-data/placement/region
region="$imds_value"
prefix="${RUNNERSCALE_SSM_PREFIX:-}"
if [[ -z "$prefix" ]]; then
    imds_get meta-data/tags/instance/runnerscale:ssm-prefix || imds_value="$DEFAULT_PREFIX"
    prefix="$imds_value"
fi
if ! [[ "$prefix" =~ ^(/[A-Za-z0-9_.-]+)+$ ]]; then
    log "the SSM parameter prefix '$prefix' is not an absolute parameter path without a" \
        "trailing slash (like $DEFAULT_PREFIX): fix RUNNERSCALE_SSM_PREFIX or the instance tag" \
        "runnerscale:ssm-prefix"
    exit 2
fi
parameter="$prefix/$instance_id"
# Informational, for the log and the runner (tags the daemon puts on the instance).
imds_get meta-data/tags/instance/runnerscale:runner || true
runner_name="$imds_value"
imds_get meta-data/tags/instance/runnerscale:pool || true
pool="$imds_value"

# --- 2. the watcher -------------------------------------------------------------------------

watch_notices &
watcher=$!

# --- 3. the JIT configuration -------------------------------------------------------------

log "instance $instance_id in $region: reading $parameter"
deadline=$((SECONDS + PARAMETER_TIMEOUT))
last_error=""
jit_config=""
while :; do
    if ((stop_requested)); then
        log "stopped before the runner started"
        exit 0
    fi
    if jit_config=$(aws_cli ssm get-parameter --name "$parameter" --with-decryption \
        --query Parameter.Value --output text 2>"$scratch/aws-error") && [[ -n "$jit_config" ]]; then
        break
    fi
    jit_config=""
    error=$(aws_error)
    if [[ "$error" != "$last_error" ]]; then
        log "$parameter is not readable yet: $error"
        last_error="$error"
    fi
    if ((SECONDS >= deadline)); then
        log "gave up on $parameter after ${PARAMETER_TIMEOUT}s: does the instance role allow" \
            "ssm:GetParameter on it (images/ec2/iam/instance-policy.json), and is the daemon" \
            "writing it (its log)?"
        exit 4
    fi
    sleep 2 &
    wait "$!" || true
done

if aws_cli ssm delete-parameter --name "$parameter" 2>"$scratch/aws-error"; then
    log "read and deleted $parameter"
else
    # Not fatal: the daemon deletes it too once the runner is online.
    log "read $parameter but could not delete it: $(aws_error)"
fi

# --- 4. the runner ------------------------------------------------------------------------

if ((stop_requested)); then
    log "stopped before the runner started"
    exit 0
fi

log "starting runner ${runner_name:-(unnamed)} of pool ${pool:-(none)} as $RUNNER_USER"
cd "$RUNNER_HOME"
# Assignments before a command are exported to that command alone: setpriv (and, by exec, run.sh)
# gets the secret in its environment, never on its command line.
runner_user_home=$(getent passwd "$RUNNER_USER" | cut -d: -f6)
# The runner and its jobs get the usual umask (this script's own is 077, for its scratch files):
# a job's files must be readable by the containers it starts as another user.
umask 022
if (($(id -u) == runner_uid)); then
    as_runner=() # already that user (tests that do not run as root)
else
    as_runner=(setpriv --reuid="$runner_uid" --regid="$runner_gid" --init-groups --)
fi
ACTIONS_RUNNER_INPUT_JITCONFIG="$jit_config" \
    RUNNER_MANUALLY_TRAP_SIG=1 ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT=1 \
    RUNNERSCALE_RUNNER_NAME="$runner_name" RUNNERSCALE_POOL="$pool" \
    HOME="${runner_user_home:-$RUNNER_HOME}" USER="$RUNNER_USER" LOGNAME="$RUNNER_USER" \
    "${as_runner[@]}" "$run_sh" &
runner=$!
jit_config=""
if ((stop_requested)); then
    kill -TERM "$runner" 2>/dev/null || true # the signal came before $runner was set
fi
status=0
while :; do
    interrupted=0
    status=0
    wait "$runner" || status=$?
    if ((interrupted == 0)); then
        break
    fi
done
runner=""
if ((stop_requested)); then
    log "runner stopped (exit code $status)"
    exit 0
fi
log "runner exited with code $status"
exit "$status"
