"""docs/backends/external.md's provider and boot script, taken from the page and installed in
a folder as a reader installs them: the provider, its TOML config file, the boot script, and
the "runner" folder copied per instance (a ``run.sh`` the test chooses: the stand-in runner,
or one that checks its files arrived and waits).

Why from the page: the tests then run what a reader reads, and fail when the text changes
under them. The provider gets a clean environment (garm's rule), so everything the boot needs
is in its config file and the runner folder's ``run.sh``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import runnerscale
from runnerscale.instance_access import InstanceAccess
from tests.documented import EXTERNAL, fenced_block
from tests.providers.external.support import Rig

__all__ = [
    "Installed",
    "boot_script",
    "documented_provider",
    "install",
    "lingering_runner",
    "rig",
    "stand_in_runner",
]

#: Where the checkout's code is: a runner started by the provider imports it from there.
SOURCE = Path(runnerscale.__file__).parents[1]


def documented_provider() -> str:
    """The page's provider (the bash block that starts ``garm-provider-local``)."""
    return fenced_block(EXTERNAL, "bash", "# garm-provider-local")


def boot_script() -> str:
    """The page's boot script (the bash block of an instance's boot)."""
    return fenced_block(EXTERNAL, "bash", "# An instance's boot")


def stand_in_runner() -> str:
    """``run.sh`` of a runner folder: the stand-in runner, reading the settings files the boot
    fetched into its folder, as the official runner does."""
    return (
        "#!/bin/sh\n"
        f"export PYTHONPATH={SOURCE}\n"
        f'exec {sys.executable} -m runnerscale sim-runner --root "$(dirname "$0")"\n'
    )


def lingering_runner() -> str:
    """``run.sh`` of a runner that checks its three settings files arrived (else it exits 3)
    and then waits, as a runner waiting for its job does."""
    return (
        "#!/bin/sh\n"
        'cd "$(dirname "$0")" || exit 3\n'
        "for file in .runner .credentials .credentials_rsaparams; do\n"
        '    [ -s "$file" ] || exit 3\n'
        "done\n"
        "exec /bin/sleep 86400\n"
    )


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@dataclass(frozen=True)
class Installed:
    """The page's provider installed in a folder."""

    #: The provider program (``garm-provider-local``).
    provider: Path
    #: Its config file (``GARM_PROVIDER_CONFIG_FILE``).
    config_file: Path
    #: The boot script.
    boot: Path
    #: The runner folder, copied per instance.
    runner: Path
    #: The instances' folders (``root`` in the config file), one folder per controller id.
    root: Path

    def instance_dirs(self) -> list[Path]:
        """Every instance folder, of any controller."""
        return sorted(path for path in self.root.glob("*/*") if path.is_dir())

    def shim(self, name: str, text: str) -> Path:
        """A program beside the provider (a wrapper of it, say), executable."""
        return _executable(self.provider.parent / name, text)


def install(folder: Path, run_sh: str) -> Installed:
    """The page's provider and boot script in ``folder``, its config file naming them, a
    runner folder whose ``run.sh`` is ``run_sh``."""
    folder.mkdir(parents=True, exist_ok=True)
    provider = _executable(folder / "garm-provider-local", documented_provider())
    boot = _executable(folder / "garm-local-boot", boot_script())
    runner = folder / "actions-runner"
    runner.mkdir(exist_ok=True)
    _executable(runner / "run.sh", run_sh)
    root = folder / "instances"
    config_file = folder / "provider-local.toml"
    config = fenced_block(EXTERNAL, "toml", "garm-local-boot")
    for documented, here in (
        ("/var/lib/garm-provider-local", root),
        ("/usr/local/bin/garm-local-boot", boot),
        ("/opt/actions-runner", runner),
    ):
        assert config.count(f'"{documented}"') == 1, (
            f"the page's config no longer names {documented}"
        )
        config = config.replace(f'"{documented}"', f'"{here}"')
    config_file.write_text(config)
    return Installed(provider, config_file, boot, runner, root)


def rig(installed: Installed, access: InstanceAccess) -> Rig:
    """runnerscale's providers over the installed provider, granting through ``access`` (the
    real endpoints' registry), in this process's environment (its instances' curl reaches
    the endpoints on loopback: not through the test providers' made-up proxy)."""
    made = Rig(
        installed.root.parent,
        str(installed.provider),
        instance_access=access,
        config_file=installed.config_file,
    )
    made.environ = os.environ
    return made
