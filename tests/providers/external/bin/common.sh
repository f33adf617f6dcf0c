# Shared by the test providers (sourced, not run). garm hands a provider a clean environment
# (no PATH), so this sets its own, then reads the provider's config file (shell assignments:
# STATE=<directory for its state>, and each provider's own switches), and records the call:
# the environment exactly as the provider got it, and its stdin, under $STATE/calls/.
export PATH=/usr/local/bin:/usr/bin:/bin
here=$(cd "${BASH_SOURCE[0]%/*}" && pwd)
if [ -n "${GARM_PROVIDER_CONFIG_FILE:-}" ]; then
    # shellcheck source=/dev/null
    . "$GARM_PROVIDER_CONFIG_FILE"
fi
: "${STATE:?the config file (GARM_PROVIDER_CONFIG_FILE) must set STATE}"
mkdir -p "$STATE/calls" "$STATE/instances"
call=$(mktemp -d "$STATE/calls/$(date +%s%N)-${GARM_COMMAND:-none}.XXXX")
# /proc/$$/environ is the environment as exec'd, before this script changed anything.
tr '\0' '\n' < "/proc/$$/environ" > "$call/env"
cat > "$call/stdin"

# Whether a process (not a zombie) with this pid is alive.
alive() {
    local state
    state=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
