"""garm's default boot script, its JIT path, against the daemon's routes with real ``curl``
(GARM.md §6.5): status installing, the three runner files, the service name, the unit file,
the system info, status idle; after which every route refuses the token. The files written
reassemble into the very JIT config granted, and neither the token nor the JIT config reach
the log."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path

import pytest

from runnerscale.instance_access import InstanceGrant
from tests.instancemeta.conftest import Served
from tests.instancemeta.jit import encoded

# The calls as garm's CloudConfigTemplate makes them: the same curl options and headers.
BOOT_SCRIPT = r"""
set -e -o pipefail
CALLBACK_URL="$1"; METADATA_URL="$2"; TOKEN="$3"; RUN_HOME="$4"
call() {
  curl --retry 5 --retry-delay 5 --retry-connrefused --fail -s -X POST -d "$1" \
    -H 'Accept: application/json' -H "Authorization: Bearer $TOKEN" "$CALLBACK_URL/status" \
    || echo "failed to call home"
}
sendStatus() { call "{\"status\": \"installing\", \"message\": \"$1\"}"; }
success() { call "{\"status\": \"idle\", \"message\": \"$1\", \"agent_id\": $2}"; }
systemInfo() {
  curl --retry 5 --retry-delay 5 --retry-connrefused --fail -s -X POST \
    -d "{\"os_name\": \"Ubuntu\", \"os_version\": \"24.04\", \"agent_id\": $1}" \
    -H 'Accept: application/json' -H "Authorization: Bearer $TOKEN" \
    "${CALLBACK_URL%/status}/system-info/" || true
}
get() {
  curl --retry 5 --retry-delay 5 --retry-connrefused --fail -s -X GET \
    -H 'Accept: application/json' -H "Authorization: Bearer $TOKEN" "$METADATA_URL/$1"
}
sendStatus "configuring runner"
sendStatus "downloading JIT credentials"
get credentials/runner > "$RUN_HOME/.runner"
get credentials/credentials > "$RUN_HOME/.credentials"
get credentials/credentials_rsaparams > "$RUN_HOME/.credentials_rsaparams"
get system/service-name > "$RUN_HOME/.service"
SVC_NAME=$(cat "$RUN_HOME/.service").service
sendStatus "generating systemd unit file"
get "systemd/unit-file?runAsUser=runner" > "$RUN_HOME/$SVC_NAME"
sendStatus "enabling runner service"
AGENT_ID=""
systemInfo ${AGENT_ID:-null}
success "runner successfully installed" ${AGENT_ID:-null}
"""

AFTER = r"""
for route in credentials/runner credentials/credentials credentials/credentials_rsaparams \
    system/service-name systemd/unit-file system/cert-bundle runner-registration-token/ \
    install-script/; do
  curl -s -o /dev/null -w "%{http_code} " -H "Authorization: Bearer $3" "$2/$route"
done
for route in status system-info/; do
  curl -s -o /dev/null -w "%{http_code} " -X POST -d '{}' -H "Authorization: Bearer $3" "$1/$route"
done
"""


async def run(script: str, grant: InstanceGrant, home: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        "boot",
        grant.callback_url,
        grant.metadata_url,
        grant.token,
        str(home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_garms_boot_script_fetches_the_jit_config_once_and_reports(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    jitconfig = encoded()
    grant = served.registry.grant(
        pool="lxd", runner_name="rs-lxd-1", jitconfig=jitconfig, lifetime=600
    )
    said = await run(BOOT_SCRIPT, grant, tmp_path)
    assert "failed to call home" not in said

    files = {
        f".{name}": base64.b64encode((tmp_path / f".{name}").read_bytes()).decode()
        for name in ("runner", "credentials", "credentials_rsaparams")
    }
    original = json.loads(base64.b64decode(jitconfig))
    assert files == original
    assert base64.b64encode(json.dumps(files).encode()).decode() == jitconfig
    assert (tmp_path / ".service").read_text() == "actions.runner.acme.app"
    unit = (tmp_path / "actions.runner.acme.app.service").read_text()
    assert "ExecStart=/home/runner/actions-runner/runsvc.sh" in unit

    report = served.registry.report("rs-lxd-1")
    assert report is not None
    assert (report.status, report.message, report.failed) == (
        "idle",
        "runner successfully installed",
        False,
    )
    info = served.registry.system_info("rs-lxd-1")
    assert info is not None
    assert info.os_name == "Ubuntu"
    statuses = [outcome for route, outcome in served.counted if route == "status"]
    assert statuses == ["ok"] * 5

    # The boot ended: every route refuses the token now.
    codes = (await run(AFTER, grant, tmp_path)).split()
    assert codes == ["401"] * 10

    assert grant.token not in caplog.text
    assert jitconfig not in caplog.text
    for value in original.values():
        assert value not in caplog.text
    assert "secret-rsa-d-part" not in caplog.text
    assert "reports idle: runner successfully installed" in caplog.text
