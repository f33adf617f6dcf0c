"""``runnerscale service install/uninstall/status`` as a person (or a package) uses them.

Every install here writes under ``--root`` (a temporary folder), so the file effects can be
seen and nothing of this machine is touched; systemd does not run here, so the commands left
to run are printed.

The units are checked with Debian's ``systemd-analyze verify`` (:mod:`tests.systemd`), which
never resolves ``User=``, so the unit's user need not exist. A user unit is verified with
``--user``, which needs a ``$XDG_RUNTIME_DIR``: the test's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from runnerscale.cli import app
from runnerscale.service import envfile
from runnerscale.service.manager import Manager, ManagerError
from tests.systemd import verify

runner = CliRunner()

TOKEN = 'ghp_t0ken"with$odd\\chars`'
SECRET = "webhook s3cret with spaces"

CONFIG = """\
github:
  api_url: http://127.0.0.1:9000
  token: ${GITHUB_TOKEN}
  webhook_secret: ${WEBHOOK_SECRET}
targets:
  - repo: acme/app
pools:
  - name: linux
    labels: [self-hosted, linux]
    provider: local
    max_runners: 2
    local:
      command: [runnerscale, sim-runner]
      work_root: /srv/runner work
%(extra)s"""

DOCKER_POOL = """\
  - name: containers
    labels: [self-hosted, docker]
    provider: docker
    max_runners: 2
    docker:
      image: runnerscale-runner:2.328.0
"""


def write_config(folder: Path, extra: str = "", text: str | None = None) -> Path:
    path = folder / "runnerscale.yaml"
    path.write_text(text if text is not None else CONFIG % {"extra": extra})
    return path


def invoke(arguments: list[str], **env: str | None) -> Result:
    variables: dict[str, str | None] = {"GITHUB_TOKEN": None, "WEBHOOK_SECRET": None}
    variables.update(env)
    return runner.invoke(app, ["service", *arguments], env=variables)


def install(config: Path, root: Path, *options: str, **env: str | None) -> Result:
    return invoke(["install", "-c", str(config), "--root", str(root), *options], **env)


def install_system(config: Path, root: Path) -> Result:
    """``service install --system`` with the config's variables set; it succeeds."""
    result = install(config, root, "--system", GITHUB_TOKEN=TOKEN, WEBHOOK_SECRET=SECRET)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


def files_under(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its mode."""
    return {
        "/" + str(path.relative_to(root)): path.stat().st_mode & 0o777
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_a_system_install_writes_the_unit_the_secrets_0600_and_the_user(
    tmp_path: Path, root: Path
) -> None:
    config = write_config(tmp_path)
    result = install_system(config, root)
    assert files_under(root) == {
        "/etc/runnerscale/runnerscale.env": 0o600,
        "/etc/systemd/system/runnerscale.service": 0o644,
        "/etc/sysusers.d/runnerscale.conf": 0o644,
    }
    assert (root / "etc/runnerscale/runnerscale.env").stat().st_uid == os.geteuid()
    env_file = root / "etc/runnerscale/runnerscale.env"
    assert envfile.parse(env_file.read_text()) == {"GITHUB_TOKEN": TOKEN, "WEBHOOK_SECRET": SECRET}
    unit = (root / "etc/systemd/system/runnerscale.service").read_text()
    entry = Path(sys.executable).parent / "runnerscale"
    assert f"ExecStart={entry} run -c {config}" in unit.splitlines()
    for line in (
        "User=runnerscale",
        "EnvironmentFile=/etc/runnerscale/runnerscale.env",
        "Environment=RUNNERSCALE_STATE_DIR=/var/lib/runnerscale",
        "StateDirectory=runnerscale",
        "ProtectSystem=strict",
        'ReadWritePaths="/srv/runner work"',
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "KillMode=process",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WantedBy=multi-user.target",
    ):
        assert line in unit.splitlines()
    assert (root / "srv/runner work").is_dir()  # made for ReadWritePaths, which must exist
    # The user entry makes the user with Debian's systemd-sysusers (in the root's files).
    sysusers = shutil.which("systemd-sysusers")
    assert sysusers is not None, "systemd-sysusers is missing: bash scripts/install-system-deps"
    subprocess.run([sysusers, f"--root={root}"], check=True, capture_output=True)
    account = (root / "etc/passwd").read_text().splitlines()
    assert len(account) == 1
    name, _, uid, gid, _, home, shell = account[0].split(":")
    assert (name, uid == gid, home, shell) == (
        "runnerscale",
        True,
        "/var/lib/runnerscale",
        "/usr/sbin/nologin",
    )
    # What was done and what is left to run; never a secret.
    assert "variables: GITHUB_TOKEN, WEBHOOK_SECRET" in result.output
    assert "systemd-sysusers /etc/sysusers.d/runnerscale.conf" in result.output
    assert "systemctl enable runnerscale.service" in result.output
    for secret in (TOKEN, SECRET):
        assert secret not in result.output
        assert secret not in unit


@pytest.mark.parametrize("extra", ["", DOCKER_POOL], ids=["local", "local-and-docker"])
def test_the_system_unit_passes_systemd_analyze_verify(
    tmp_path: Path, root: Path, extra: str
) -> None:
    config = write_config(tmp_path, extra)
    install_system(config, root)
    unit = root / "etc/systemd/system/runnerscale.service"
    verify(unit)
    if extra:
        assert "SupplementaryGroups=docker" in unit.read_text().splitlines()
        assert "After=network-online.target docker.service" in unit.read_text().splitlines()


def test_the_user_unit_passes_systemd_analyze_verify(tmp_path: Path, root: Path) -> None:
    config = write_config(tmp_path)
    home = "/home/alice"
    result = install(
        config,
        root,
        "--user",
        GITHUB_TOKEN=TOKEN,
        WEBHOOK_SECRET=SECRET,
        HOME=home,
        XDG_CONFIG_HOME=None,
        RUNNERSCALE_STATE_DIR=None,
        XDG_STATE_HOME=None,
    )
    assert result.exit_code == 0, result.output
    assert files_under(root) == {
        f"{home}/.config/runnerscale/runnerscale.env": 0o600,
        f"{home}/.config/systemd/user/runnerscale.service": 0o644,
    }
    assert (root / "home/alice/.config/runnerscale").stat().st_mode & 0o777 == 0o700
    unit = root / "home/alice/.config/systemd/user/runnerscale.service"
    lines = unit.read_text().splitlines()
    assert f"Environment=RUNNERSCALE_STATE_DIR={home}/.local/state/runnerscale" in lines
    assert "WantedBy=default.target" in lines
    assert not [line for line in lines if line.startswith(("User=", "ProtectSystem="))]
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    verify(unit, "--user", env={"XDG_RUNTIME_DIR": str(runtime)})
    assert "systemctl --user enable runnerscale.service" in result.output
    assert "loginctl enable-linger" in result.output


def test_a_local_pool_that_runs_runners_as_another_user_makes_the_daemon_root(
    tmp_path: Path, root: Path
) -> None:
    text = (CONFIG % {"extra": ""}).replace(
        "      work_root: /srv/runner work\n", "      user: builder\n"
    )
    config = write_config(tmp_path, text=text)
    result = install_system(config, root)
    unit = root / "etc/systemd/system/runnerscale.service"
    assert not [line for line in unit.read_text().splitlines() if line.startswith("User=")]
    assert not (root / "etc/sysusers.d").exists()
    assert "the daemon runs as root" in result.output
    assert "linux (as builder)" in result.output
    verify(unit)


def test_the_docker_sockets_group_is_the_units_supplementary_group(
    tmp_path: Path, root: Path
) -> None:
    (root / "etc").mkdir()
    (root / "etc/group").write_text("root:x:0:\ndockerd:x:4242:\n")
    (root / "run").mkdir()
    socket = root / "run/engine.sock"
    socket.touch()
    os.chown(socket, -1, 4242)
    pool = DOCKER_POOL + "      host: unix:///run/engine.sock\n"
    config = write_config(tmp_path, pool)
    result = install_system(config, root)
    unit = (root / "etc/systemd/system/runnerscale.service").read_text()
    assert "SupplementaryGroups=dockerd" in unit.splitlines()
    assert "as good as root" in result.output


def test_installing_again_keeps_the_values_it_is_not_given_and_takes_new_ones(
    tmp_path: Path, root: Path
) -> None:
    config = write_config(tmp_path)
    install_system(config, root)
    again = install(config, root, "--system", WEBHOOK_SECRET="rotated-secret-value")
    assert again.exit_code == 0, again.output
    env_file = root / "etc/runnerscale/runnerscale.env"
    values = envfile.parse(env_file.read_text())
    assert values == {"GITHUB_TOKEN": TOKEN, "WEBHOOK_SECRET": "rotated-secret-value"}
    assert env_file.stat().st_mode & 0o777 == 0o600


def test_uninstall_removes_what_install_wrote_and_keeps_the_state(
    tmp_path: Path, root: Path
) -> None:
    config = write_config(tmp_path)
    install_system(config, root)
    state = root / "srv/runner work/linux"
    state.mkdir()
    status = invoke(["status", "--system", "--root", str(root)])
    assert status.exit_code == 0, status.output
    assert "mode 0600, variables: GITHUB_TOKEN, WEBHOOK_SECRET" in status.output
    assert TOKEN not in status.output

    result = invoke(["uninstall", "--system", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert files_under(root) == {}
    assert state.is_dir()  # the runners' folders are state: kept
    assert "kept the state: /var/lib/runnerscale, /srv/runner work" in result.output
    assert "kept the user runnerscale" in result.output
    assert "systemctl disable --now runnerscale.service" in result.output
    assert "systemctl kill --kill-who=all runnerscale.service" in result.output

    again = invoke(["uninstall", "--system", "--root", str(root)])
    assert again.exit_code == 1
    assert "not installed" in again.output
    assert invoke(["status", "--system", "--root", str(root)]).exit_code == 1


@pytest.mark.parametrize(
    ("options", "env", "message"),
    [
        (["--user", "--system"], {}, "give --user or --system, not both"),
        (
            ["--system"],
            {"WEBHOOK_SECRET": SECRET},
            "not set for the service: GITHUB_TOKEN",
        ),
        (
            ["--system"],
            {"GITHUB_TOKEN": TOKEN, "WEBHOOK_SECRET": "two\nlines"},
            "the value of WEBHOOK_SECRET holds a line break",
        ),
    ],
    ids=["both-scopes", "variable-not-set", "value-with-a-line-break"],
)
def test_refusals_write_nothing(
    tmp_path: Path, root: Path, options: list[str], env: dict[str, str], message: str
) -> None:
    config = write_config(tmp_path)
    result = install(config, root, *options, **env)
    assert result.exit_code != 0
    assert message in result.output
    assert files_under(root) == {}


def test_a_bad_config_is_refused_before_anything_is_written(tmp_path: Path, root: Path) -> None:
    config = write_config(
        tmp_path, text=(CONFIG % {"extra": ""}).replace("max_runners: 2", "max_runners: -1")
    )
    result = install(config, root, "--system", GITHUB_TOKEN=TOKEN, WEBHOOK_SECRET=SECRET)
    assert result.exit_code == 2
    assert "the configuration is not valid" in result.output
    assert "max_runners" in result.output
    assert files_under(root) == {}


def test_a_system_install_on_this_system_needs_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = invoke(["install", "-c", str(config), "--system"], GITHUB_TOKEN=TOKEN)
    assert result.exit_code == 2
    assert "run it as root (sudo), or pass --user" in result.output


def test_env_file_values_read_back_as_written(tmp_path: Path) -> None:
    values = {"A": "plain", "B": 'q"u\\o$t`e s', "C": "", "D": "  padded  "}
    assert envfile.parse(envfile.render(values)) == values
    # A shell reads it the same way (docs/deploy.md sources it to run `runnerscale status`).
    path = tmp_path / "runnerscale.env"
    path.write_text(envfile.render(values))
    for name, value in values.items():
        shown = subprocess.run(
            ["sh", "-c", f'. "$1" && printf %s "${name}"', "sh", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert shown.stdout == value
    with pytest.raises(envfile.EnvFileError, match="B holds a line break") as caught:
        envfile.render({"B": "secret\nvalue"})
    assert "secret" not in str(caught.value)


def test_where_systemd_runs_commands_run_and_a_failure_says_what_it_printed() -> None:
    manager = Manager(here=True, booted=True)
    manager.run(["true"])
    manager.run(["false"], check=False)
    assert manager.lines() == ["ran: true", "ran: false"]
    with pytest.raises(ManagerError, match=r"sh -c 'echo broken >&2; exit 3' failed \(3\): broken"):
        manager.run(["sh", "-c", "echo broken >&2; exit 3"])
    with pytest.raises(ManagerError, match="no-such-program is not installed here"):
        manager.run(["no-such-program"])
    # Here, but without systemd: what needs no systemd runs, the rest is listed.
    elsewhere = Manager(here=True, booted=False)
    elsewhere.run(["true"], systemd=False)
    elsewhere.run(["systemctl", "daemon-reload"])
    assert (elsewhere.done, elsewhere.pending) == ([["true"]], [["systemctl", "daemon-reload"]])


def test_a_config_the_service_user_cannot_read_is_pointed_out(root: Path) -> None:
    # Not under pytest's folders, which are for root alone (0700).
    with tempfile.TemporaryDirectory(prefix="rs-shared-") as folder:
        shared = Path(folder)
        shared.chmod(0o755)
        config = write_config(shared)
        config.chmod(0o644)
        assert f"cannot read {config}" not in install_system(config, root).output
        config.chmod(0o600)
        assert f"user runnerscale cannot read {config}" in install_system(config, root).output


def test_a_config_in_a_folder_closed_to_the_service_user_names_the_folder(root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="rs-closed-") as folder:  # made 0700
        config = write_config(Path(folder))
        config.chmod(0o644)  # its own mode does not help
        said = " ".join(install_system(config, root).output.split())
        assert f"the folder {folder} is closed to it" in said
        assert "chmod o+r" not in said


def test_what_is_under_a_private_tmp_is_pointed_out(root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="rs-tmp-", dir="/tmp") as folder:
        config = write_config(Path(folder))
        said = " ".join(install_system(config, root).output.split())
        assert f"{config} is under /tmp" in said
        assert "(PrivateTmp)" in said
    with tempfile.TemporaryDirectory(prefix="rs-srv-", dir="/var/lib") as folder:
        config = write_config(Path(folder))
        assert "PrivateTmp" not in install_system(config, root).output
