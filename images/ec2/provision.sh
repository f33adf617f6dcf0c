#!/usr/bin/env bash
# Provisions the runnerscale runner AMI: run by Packer (runner.pkr.hcl) as root on a fresh
# Ubuntu 24.04 build instance, after the boot script and its unit were copied to /tmp.
#
# Leaves: the official runner in /opt/actions-runner (owned by `runner`), the user `runner`
# (uid 1001, in the docker group, passwordless sudo if RUNNER_SUDO=true, as on GitHub's hosted
# runners), Docker (Ubuntu's docker.io with buildx and compose), the AWS CLI v2,
# /usr/local/sbin/runnerscale-boot and runnerscale-boot.service enabled. Nothing runs the
# runner here: the unit starts at the first boot of an instance made from the AMI.
#
# Environment (set by the template): RUNNER_VERSION, RUNNER_SHA256 (of the tarball for
# RUNNER_ARCH), RUNNER_ARCH (x64 or arm64), RUNNER_SUDO (true or false).

set -euo pipefail

: "${RUNNER_VERSION:?the actions/runner release to install, like 2.328.0}"
: "${RUNNER_SHA256:?the SHA-256 of the release tarball (actions/runner release notes)}"
: "${RUNNER_ARCH:?x64 or arm64}"
RUNNER_SUDO="${RUNNER_SUDO:-true}"
export DEBIAN_FRONTEND=noninteractive

readonly RUNNER_HOME=/opt/actions-runner
readonly BOOT=/usr/local/sbin/runnerscale-boot
readonly UNIT=/etc/systemd/system/runnerscale-boot.service

log() {
    printf 'provision: %s\n' "$*" >&2
}

case "$RUNNER_ARCH" in
    x64) aws_arch=x86_64 ;;
    arm64) aws_arch=aarch64 ;;
    *)
        log "RUNNER_ARCH is '$RUNNER_ARCH': x64 or arm64"
        exit 2
        ;;
esac

# Wait for cloud-init's own apt runs on the build instance to end, or apt fails on its lock.
cloud-init status --wait >/dev/null || true

log "packages"
apt-get update -q
apt-get upgrade -y -q
apt-get install -y -q --no-install-recommends \
    ca-certificates curl git jq unzip zstd xz-utils build-essential \
    docker.io docker-buildx docker-compose-v2
systemctl enable docker.service containerd.service

# No package manager at work when a job starts: timers that run apt at boot hold its lock, and a
# job's `apt-get install` would fail. The AMI is rebuilt for updates instead.
systemctl disable apt-daily.timer apt-daily-upgrade.timer
apt-get purge -y -q unattended-upgrades

log "AWS CLI v2"
curl -fsSL --retry 5 -o /tmp/awscliv2.zip "https://awscli.amazonaws.com/awscli-exe-linux-${aws_arch}.zip"
unzip -q /tmp/awscliv2.zip -d /tmp
/tmp/aws/install --update
rm -rf /tmp/aws /tmp/awscliv2.zip
aws --version

log "user runner"
if ! id runner >/dev/null 2>&1; then
    useradd --uid 1001 --create-home --shell /bin/bash --groups docker runner
fi
if [[ "$RUNNER_SUDO" == true ]]; then
    echo 'runner ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/runner
    chmod 0440 /etc/sudoers.d/runner
    visudo -cf /etc/sudoers.d/runner
fi

log "actions/runner $RUNNER_VERSION ($RUNNER_ARCH)"
tarball="actions-runner-linux-${RUNNER_ARCH}-${RUNNER_VERSION}.tar.gz"
curl -fsSL --retry 5 -o "/tmp/$tarball" \
    "https://github.com/actions/runner/releases/download/v${RUNNER_VERSION}/${tarball}"
echo "${RUNNER_SHA256}  /tmp/${tarball}" | sha256sum -c -
mkdir -p "$RUNNER_HOME"
tar -xzf "/tmp/$tarball" -C "$RUNNER_HOME"
rm -f "/tmp/$tarball"
"$RUNNER_HOME/bin/installdependencies.sh"
chown -R runner:runner "$RUNNER_HOME"
test -x "$RUNNER_HOME/run.sh"

log "the boot script and its unit"
install -o root -g root -m 0755 /tmp/runnerscale-boot "$BOOT"
install -o root -g root -m 0644 /tmp/runnerscale-boot.service "$UNIT"
install -d -o root -g root -m 0755 /etc/runnerscale
rm -f /tmp/runnerscale-boot /tmp/runnerscale-boot.service
systemctl daemon-reload
systemctl enable runnerscale-boot.service

log "clean up"
apt-get clean
rm -rf /var/lib/apt/lists/*
# Instances made from the AMI run cloud-init afresh (their own SSH host keys, machine id and
# user data).
cloud-init clean --logs --machine-id
