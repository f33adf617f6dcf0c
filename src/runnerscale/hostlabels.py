"""Host-aware runner labels: what ``auto`` in a pool's labels stands for.

Why it looks the way it does:

*Labels follow from the host, not from memory.* A pool that writes ``labels: [self-hosted,
linux, auto]`` gets its host's architecture (``x64``, ``arm64``, ...) and accelerators
(``gpu``/``nvidia``/``cuda``, ``gpu``/``rocm``/``amd``, ``openvino``, or ``cpu-only``) as they
are found, so moving a pool to another machine cannot leave it advertising hardware it no longer
has. GitHub routes a job to any runner whose labels contain the job's, so a wrong label sends
jobs to a runner that cannot run them.

*Contradictions are errors, not guesses.* A pool that names an architecture its host does not
have, or two architectures, is rejected with a message saying how to fix it (:func:`expand_labels`
raises :class:`HostLabelError`); it is never silently corrected.

*Detection is cheap, bounded and never fails.* It looks for device nodes and install directories
and runs at most one short command (``nvidia-smi -L``, 10 s timeout). A probe that fails counts
as "not present". Every probe is injectable (:class:`Probes`), so the tests need no GPU.

*Messages carry labels and pool names only*, never paths, command output or the environment.
"""

from __future__ import annotations

import glob
import logging
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from runnerscale.model import ARCH_LABELS, AUTO_LABEL, CPU_ONLY

log = logging.getLogger("runnerscale.hostlabels")

NVIDIA_LABELS = frozenset({"gpu", "nvidia", "cuda"})
ROCM_LABELS = frozenset({"gpu", "rocm", "amd"})
OPENVINO_LABELS = frozenset({"openvino"})

_RUN_TIMEOUT = 10.0

_ARCH_ALIASES = {
    "x86_64": "x64",
    "amd64": "x64",
    "x64": "x64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "arm": "arm",
    "i386": "x86",
    "i686": "x86",
    "x86": "x86",
}


class HostLabelError(ValueError):
    """A pool's labels contradict its host (or themselves)."""


@dataclass(frozen=True)
class HostFacts:
    """What was detected about a host: its architecture label and its accelerator labels."""

    arch: str | None
    accelerators: frozenset[str] = frozenset()

    def labels(self) -> tuple[str, ...]:
        """The architecture first (when known), then the accelerators sorted, or ``cpu-only``."""
        head = (self.arch,) if self.arch else ()
        tail = tuple(sorted(self.accelerators)) if self.accelerators else (CPU_ONLY,)
        return head + tail


def normalize_arch(machine: str) -> str | None:
    """GitHub's architecture label for a ``platform.machine()`` value; None when unknown."""
    return _ARCH_ALIASES.get(machine.strip().lower())


def _run(argv: Sequence[str]) -> str | None:
    """Run a command; its stdout when it exits 0, else None. Never raises."""
    try:
        completed = subprocess.run(  # noqa: S603 - fixed argv of a probe, no shell
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_RUN_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return completed.stdout if completed.returncode == 0 else None


def _environ() -> Mapping[str, str]:
    return os.environ


@dataclass(frozen=True)
class Probes:
    """The host's observable facts, as functions: the defaults look at this machine."""

    machine: Callable[[], str] = platform.machine
    which: Callable[[str], str | None] = shutil.which
    exists: Callable[[str], bool] = os.path.exists
    glob: Callable[[str], list[str]] = glob.glob
    run: Callable[[Sequence[str]], str | None] = _run
    environ: Mapping[str, str] = field(default_factory=_environ)


def _has_nvidia(probes: Probes) -> bool:
    path = probes.which("nvidia-smi")
    if path is None:
        log.debug("no NVIDIA GPU: nvidia-smi is not on PATH")
        return False
    output = probes.run([path, "-L"])
    if output is None:
        log.debug("no NVIDIA GPU: nvidia-smi -L failed")
        return False
    gpus = [line for line in output.splitlines() if line.lstrip().startswith("GPU ")]
    if not gpus:
        log.debug("no NVIDIA GPU: nvidia-smi -L lists none")
        return False
    log.debug("NVIDIA: nvidia-smi -L lists %d GPU(s)", len(gpus))
    return True


def _has_rocm(probes: Probes) -> bool:
    if not probes.exists("/dev/kfd"):
        log.debug("no ROCm: /dev/kfd does not exist")
        return False
    tools = [tool for tool in ("rocminfo", "rocm-smi") if probes.which(tool) is not None]
    if tools:
        log.debug("ROCm: /dev/kfd exists and %s is on PATH", ", ".join(tools))
        return True
    if probes.exists("/opt/rocm"):
        log.debug("ROCm: /dev/kfd and /opt/rocm exist")
        return True
    log.debug("no ROCm: /dev/kfd exists but no ROCm runtime (rocminfo, rocm-smi, /opt/rocm)")
    return False


def _has_openvino(probes: Probes) -> bool:
    if probes.glob("/dev/accel/accel*"):
        log.debug("OpenVINO: an NPU device exists (/dev/accel/accel*)")
        return True
    if probes.glob("/opt/intel/openvino*"):
        log.debug("OpenVINO: a runtime is installed (/opt/intel/openvino*)")
        return True
    if probes.environ.get("INTEL_OPENVINO_DIR"):
        log.debug("OpenVINO: INTEL_OPENVINO_DIR is set")
        return True
    log.debug("no OpenVINO: no /dev/accel/accel*, /opt/intel/openvino* or INTEL_OPENVINO_DIR")
    return False


def detect_local_host(probes: Probes = Probes()) -> HostFacts:
    """The architecture and accelerators of the host this process runs on."""
    machine = probes.machine()
    arch = normalize_arch(machine)
    if arch is None:
        log.debug("unknown architecture %r: no architecture label", machine)
    accelerators: set[str] = set()
    if _has_nvidia(probes):
        accelerators |= NVIDIA_LABELS
    if _has_rocm(probes):
        accelerators |= ROCM_LABELS
    if _has_openvino(probes):
        accelerators |= OPENVINO_LABELS
    facts = HostFacts(arch=arch, accelerators=frozenset(accelerators))
    log.debug("host labels: %s", ", ".join(facts.labels()))
    return facts


def container_host_facts(machine: str, *, gpus: bool, devices: Sequence[str]) -> HostFacts:
    """What a container gets: the engine host's architecture (``machine`` as the engine
    reports it) and only the accelerators passed through to it (GPUs, ``/dev/kfd`` for ROCm,
    ``/dev/accel`` for an NPU). A GPU on the host that containers do not get is no label."""
    accelerators: set[str] = set()
    if gpus:
        accelerators |= NVIDIA_LABELS
    if "/dev/kfd" in devices:
        accelerators |= ROCM_LABELS
    if any(device.startswith("/dev/accel") for device in devices):
        accelerators |= OPENVINO_LABELS
    return HostFacts(arch=normalize_arch(machine), accelerators=frozenset(accelerators))


def _key(label: str) -> str:
    return label.strip().lower()


def expand_labels(labels: Sequence[str], facts: HostFacts, *, pool: str) -> tuple[str, ...]:
    """A pool's labels with ``auto`` replaced by the host's labels, at its position.

    Later case-insensitive duplicates are dropped (the first spelling stays). Raises
    :class:`HostLabelError` when ``auto`` appears more than once, when the labels name more
    than one architecture, or when they name an architecture other than the host's (when that
    is known).
    """
    autos = [label for label in labels if _key(label) == AUTO_LABEL]
    if len(autos) > 1:
        raise HostLabelError(f"pool '{pool}' names '{AUTO_LABEL}' more than once; keep one")
    named_archs = sorted({_key(label) for label in labels if _key(label) in ARCH_LABELS})
    if len(named_archs) > 1:
        raise HostLabelError(
            f"pool '{pool}' names more than one architecture ({', '.join(named_archs)}); "
            f"keep one or use '{AUTO_LABEL}'"
        )
    if facts.arch is not None and named_archs and named_archs[0] != facts.arch:
        label = next(label for label in labels if _key(label) == named_archs[0])
        raise HostLabelError(
            f"pool '{pool}' has label '{label}', but its host's architecture is {facts.arch}: "
            f"remove '{label}', or write '{AUTO_LABEL}' to take the host's own labels"
        )

    expanded: list[str] = []
    seen: set[str] = set()
    for label in labels:
        for item in facts.labels() if _key(label) == AUTO_LABEL else (label,):
            if _key(item) not in seen:
                seen.add(_key(item))
                expanded.append(item)
    return tuple(expanded)
