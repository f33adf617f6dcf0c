"""The chaos benchmark's runner: the stand-in runner, or one of the ways a real one goes wrong.

The local backend starts this for every runner (the JIT configuration in
``ACTIONS_RUNNER_INPUT_JITCONFIG``, never on the command line). From the runner's name and the
seed it picks, reproducibly, one fate:

* ``fail``: exits with code 1 at once, as a broken image or a full disk does (a failed
  creation, from the daemon's side: the runner exits before it comes online);
* ``silent``: never registers and waits to be removed (a runner that hangs at boot);
* ``dies``: runs the stand-in runner and kills it with SIGKILL a few seconds later, mid-job if
  it has one by then (the machine dies; GitHub fails the job for lost communication). It
  writes ``<marks>/<runner name>.died`` first, so the benchmark tells these deaths, which are
  its own doing, from a busy runner the daemon would have removed;
* ``serves``: the stand-in runner, which takes one job, runs it, reports and exits.

    chaos_runner.py --seed N --marks DIR [--fail 0.2] [--silent 0.05] [--dies 0.1]

With the Docker backend the runner image's entrypoint starts the runner, and this runs before
it, as an extension script of the entrypoint (``--at-boot``, the runner's name from
``RUNNERSCALE_RUNNER_NAME``; the JIT configuration is not in its environment): ``fail`` exits
with code 1 (the entrypoint then exits, and the runner never starts), ``silent`` sleeps, and
``dies`` and ``serves`` let the runner start. The benchmark kills the containers of ``dies``
(``docker kill``) :func:`death_delay` seconds after they started, and marks them itself.

    chaos_runner.py --at-boot --seed N [--fail 0.2] [--silent 0.05] [--dies 0.1]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runnerscale.fakegithub.jitconfig import decode

JIT_ENV = "ACTIONS_RUNNER_INPUT_JITCONFIG"


def fate(seed: int, name: str, fail: float, silent: float, dies: float) -> str:
    """One of ``fail``, ``silent``, ``dies`` or ``serves``, drawn from the seed and the name."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    for name_of, share in (("fail", fail), ("silent", silent), ("dies", dies)):
        if draw < share:
            return name_of
        draw -= share
    return "serves"


def death_delay(name: str) -> float:
    """Seconds from its start until a runner fated to die dies: a few (the stand-in boots in
    about one), so mid-job when it got one by then."""
    return 2.0 + (hashlib.sha256(name.encode()).digest()[0] / 255) * 3.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--marks", type=Path)
    parser.add_argument("--at-boot", action="store_true")
    parser.add_argument("--fail", type=float, default=0.2)
    parser.add_argument("--silent", type=float, default=0.05)
    parser.add_argument("--dies", type=float, default=0.1)
    args = parser.parse_args()
    if args.at_boot:
        name = os.environ["RUNNERSCALE_RUNNER_NAME"]
    else:
        if args.marks is None:
            parser.error("--marks is needed, but with --at-boot")
        name = decode(os.environ.get(JIT_ENV, "")).runner_name
    chosen = fate(args.seed, name, args.fail, args.silent, args.dies)
    if chosen == "fail":
        print(f"chaos: {name} fails at start", file=sys.stderr)
        return 1
    if chosen == "silent":
        time.sleep(3600)
        return 0
    if args.at_boot:
        return 0  # the entrypoint starts the runner; the benchmark kills the ones that die
    runner = subprocess.Popen(
        [sys.executable, "-m", "runnerscale", "sim-runner"], env=dict(os.environ)
    )
    if chosen == "serves":
        return runner.wait()
    # dies: a few seconds in, mid-job when it got one.
    try:
        return runner.wait(timeout=death_delay(name))
    except subprocess.TimeoutExpired:
        args.marks.mkdir(parents=True, exist_ok=True)
        (args.marks / f"{name}.died").write_text(str(time.time()))
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        os.kill(os.getpid(), signal.SIGKILL)
        return 137


if __name__ == "__main__":
    sys.exit(main())
