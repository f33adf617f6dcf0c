"""Host-aware labels: detection through fake probes (no GPU needed), and ``auto`` expansion."""

from __future__ import annotations

import logging
import platform
import string
import sys
from collections.abc import Iterable, Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runnerscale.hostlabels import (
    HostFacts,
    HostLabelError,
    Probes,
    detect_local_host,
    expand_labels,
    normalize_arch,
)
from runnerscale.model import ACCELERATOR_LABELS, ARCH_LABELS

NVIDIA_SMI_L = (
    "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-0)\nGPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-1)\n"
)


def fake_probes(
    *,
    machine: str = "x86_64",
    on_path: Iterable[str] = (),
    paths: Iterable[str] = (),
    globs: Mapping[str, list[str]] | None = None,
    run_output: str | None = None,
    environ: Mapping[str, str] | None = None,
    calls: list[Sequence[str]] | None = None,
) -> Probes:
    on_path = frozenset(on_path)
    paths = frozenset(paths)
    globbed = dict(globs or {})

    def run(argv: Sequence[str]) -> str | None:
        if calls is not None:
            calls.append(list(argv))
        return run_output

    return Probes(
        machine=lambda: machine,
        which=lambda name: f"/usr/bin/{name}" if name in on_path else None,
        exists=lambda path: path in paths,
        glob=lambda pattern: list(globbed.get(pattern, [])),
        run=run,
        environ=dict(environ or {}),
    )


# --- detection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probes", "expected"),
    [
        pytest.param(fake_probes(), ("x64", "cpu-only"), id="nothing-cpu-only"),
        pytest.param(
            fake_probes(on_path=["nvidia-smi"], run_output=NVIDIA_SMI_L),
            ("x64", "cuda", "gpu", "nvidia"),
            id="nvidia",
        ),
        pytest.param(
            fake_probes(on_path=["nvidia-smi"], run_output=None),
            ("x64", "cpu-only"),
            id="nvidia-smi-fails",
        ),
        pytest.param(
            fake_probes(on_path=["nvidia-smi"], run_output="No devices were found\n"),
            ("x64", "cpu-only"),
            id="nvidia-smi-lists-no-gpu",
        ),
        pytest.param(
            fake_probes(on_path=["nvidia-smi"], run_output=""),
            ("x64", "cpu-only"),
            id="nvidia-smi-prints-nothing",
        ),
        pytest.param(
            fake_probes(run_output=NVIDIA_SMI_L), ("x64", "cpu-only"), id="nvidia-smi-absent"
        ),
        pytest.param(
            fake_probes(paths=["/dev/kfd"], on_path=["rocminfo"]),
            ("x64", "amd", "gpu", "rocm"),
            id="rocm-rocminfo",
        ),
        pytest.param(
            fake_probes(paths=["/dev/kfd"], on_path=["rocm-smi"]),
            ("x64", "amd", "gpu", "rocm"),
            id="rocm-rocm-smi",
        ),
        pytest.param(
            fake_probes(paths=["/dev/kfd", "/opt/rocm"]),
            ("x64", "amd", "gpu", "rocm"),
            id="rocm-opt-rocm",
        ),
        pytest.param(fake_probes(paths=["/dev/kfd"]), ("x64", "cpu-only"), id="kfd-no-runtime"),
        pytest.param(
            fake_probes(paths=["/opt/rocm"], on_path=["rocminfo"]),
            ("x64", "cpu-only"),
            id="rocm-runtime-no-kfd",
        ),
        pytest.param(
            fake_probes(globs={"/dev/accel/accel*": ["/dev/accel/accel0"]}),
            ("x64", "openvino"),
            id="openvino-npu",
        ),
        pytest.param(
            fake_probes(globs={"/opt/intel/openvino*": ["/opt/intel/openvino_2024"]}),
            ("x64", "openvino"),
            id="openvino-runtime",
        ),
        pytest.param(
            fake_probes(environ={"INTEL_OPENVINO_DIR": "/somewhere/openvino"}),
            ("x64", "openvino"),
            id="openvino-env",
        ),
        pytest.param(
            fake_probes(environ={"INTEL_OPENVINO_DIR": ""}),
            ("x64", "cpu-only"),
            id="openvino-env-empty",
        ),
        pytest.param(
            fake_probes(
                machine="aarch64",
                on_path=["nvidia-smi"],
                run_output=NVIDIA_SMI_L,
                globs={"/dev/accel/accel*": ["/dev/accel/accel0"]},
            ),
            ("arm64", "cuda", "gpu", "nvidia", "openvino"),
            id="arm64-nvidia-and-npu",
        ),
        pytest.param(
            fake_probes(
                on_path=["nvidia-smi", "rocminfo"], run_output=NVIDIA_SMI_L, paths=["/dev/kfd"]
            ),
            ("x64", "amd", "cuda", "gpu", "nvidia", "rocm"),
            id="nvidia-and-rocm",
        ),
        pytest.param(fake_probes(machine="riscv64"), ("cpu-only",), id="unknown-arch"),
        pytest.param(
            fake_probes(machine="", on_path=["rocminfo"], paths=["/dev/kfd"]),
            ("amd", "gpu", "rocm"),
            id="no-arch-with-gpu",
        ),
    ],
)
def test_detect_local_host(probes: Probes, expected: tuple[str, ...]) -> None:
    assert detect_local_host(probes).labels() == expected


def test_nvidia_smi_is_run_by_its_resolved_path() -> None:
    calls: list[Sequence[str]] = []
    detect_local_host(fake_probes(on_path=["nvidia-smi"], run_output=NVIDIA_SMI_L, calls=calls))
    assert calls == [["/usr/bin/nvidia-smi", "-L"]]


def test_nothing_is_run_without_nvidia_smi() -> None:
    calls: list[Sequence[str]] = []
    detect_local_host(fake_probes(paths=["/dev/kfd", "/opt/rocm"], calls=calls))
    assert calls == []


def test_detection_logs_its_reasons(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="runnerscale.hostlabels"):
        detect_local_host(fake_probes(environ={"INTEL_OPENVINO_DIR": "/x"}))
    text = caplog.text
    assert "nvidia-smi is not on PATH" in text
    assert "/dev/kfd does not exist" in text
    assert "INTEL_OPENVINO_DIR is set" in text
    assert "host labels: x64, openvino" in text


def test_detect_local_host_on_this_machine() -> None:
    facts = detect_local_host()
    arch = normalize_arch(platform.machine())
    assert facts.arch == arch
    assert arch is not None  # this suite runs on x86_64 / arm64 hosts
    assert facts.labels()[0] == arch
    assert set(facts.labels()[1:]) <= ACCELERATOR_LABELS | {"cpu-only"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param([sys.executable, "-c", "print('hello')"], "hello\n", id="ok"),
        pytest.param([sys.executable, "-c", "import sys; sys.exit(3)"], None, id="non-zero"),
        pytest.param(["/nonexistent/runnerscale-probe"], None, id="missing"),
        pytest.param(["bad\0argv"], None, id="invalid-argv"),
    ],
)
def test_default_run_probe(argv: list[str], expected: str | None) -> None:
    assert Probes().run(argv) == expected


# --- facts and architectures ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", "x64"),
        ("AMD64", "x64"),
        ("x64", "x64"),
        ("aarch64", "arm64"),
        ("ARM64", "arm64"),
        ("armv7l", "arm"),
        ("armv6l", "arm"),
        ("arm", "arm"),
        ("i386", "x86"),
        ("i686", "x86"),
        ("x86", "x86"),
        ("riscv64", None),
        ("ppc64le", None),
        ("s390x", None),
        ("", None),
    ],
)
def test_normalize_arch(machine: str, expected: str | None) -> None:
    assert normalize_arch(machine) == expected


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (HostFacts(arch="x64"), ("x64", "cpu-only")),
        (HostFacts(arch=None), ("cpu-only",)),
        (HostFacts(arch="arm64", accelerators=frozenset({"openvino"})), ("arm64", "openvino")),
        (
            HostFacts(arch="x64", accelerators=frozenset({"nvidia", "gpu", "cuda"})),
            ("x64", "cuda", "gpu", "nvidia"),
        ),
    ],
)
def test_host_facts_labels(facts: HostFacts, expected: tuple[str, ...]) -> None:
    assert facts.labels() == expected


# --- expansion ------------------------------------------------------------------------------

X64 = HostFacts(arch="x64")
X64_NVIDIA = HostFacts(arch="x64", accelerators=frozenset({"gpu", "nvidia", "cuda"}))
UNKNOWN = HostFacts(arch=None)


@pytest.mark.parametrize(
    ("labels", "facts", "expected"),
    [
        pytest.param(
            ["self-hosted", "linux", "auto"],
            X64_NVIDIA,
            ("self-hosted", "linux", "x64", "cuda", "gpu", "nvidia"),
            id="auto-at-end",
        ),
        pytest.param(
            ["self-hosted", "AUTO", "linux"],
            X64,
            ("self-hosted", "x64", "cpu-only", "linux"),
            id="auto-in-place-any-case",
        ),
        pytest.param(["X64", "auto"], X64, ("X64", "cpu-only"), id="auto-and-own-arch"),
        pytest.param(
            ["gpu", "auto"], X64_NVIDIA, ("gpu", "x64", "cuda", "nvidia"), id="auto-dedup"
        ),
        pytest.param(["auto"], UNKNOWN, ("cpu-only",), id="auto-unknown-arch"),
        pytest.param(
            ["arm64", "auto"], UNKNOWN, ("arm64", "cpu-only"), id="explicit-arch-unknown-host"
        ),
        pytest.param(
            ["self-hosted", "Linux", "large"],
            X64_NVIDIA,
            ("self-hosted", "Linux", "large"),
            id="no-auto-unchanged",
        ),
        pytest.param(["x64", "linux"], X64, ("x64", "linux"), id="no-auto-own-arch"),
        pytest.param(["linux", "LINUX", "Linux"], X64, ("linux",), id="no-auto-dedup"),
        pytest.param([], X64, (), id="empty"),
    ],
)
def test_expand_labels(labels: list[str], facts: HostFacts, expected: tuple[str, ...]) -> None:
    assert expand_labels(labels, facts, pool="p") == expected


@pytest.mark.parametrize(
    ("labels", "facts", "message"),
    [
        pytest.param(
            ["self-hosted", "arm64", "auto"],
            X64,
            "pool 'gpu-box' has label 'arm64', but its host's architecture is x64: "
            "remove 'arm64', or write 'auto' to take the host's own labels",
            id="conflict-with-auto",
        ),
        pytest.param(
            ["self-hosted", "ARM64"],
            X64_NVIDIA,
            "pool 'gpu-box' has label 'ARM64', but its host's architecture is x64: "
            "remove 'ARM64', or write 'auto' to take the host's own labels",
            id="conflict-without-auto",
        ),
        pytest.param(
            ["x64", "arm64"],
            X64,
            "pool 'gpu-box' names more than one architecture (arm64, x64); keep one or use 'auto'",
            id="two-archs",
        ),
        pytest.param(
            ["x86", "arm", "auto"],
            UNKNOWN,
            "pool 'gpu-box' names more than one architecture (arm, x86); keep one or use 'auto'",
            id="two-archs-unknown-host",
        ),
        pytest.param(
            ["auto", "linux", "Auto"],
            X64,
            "pool 'gpu-box' names 'auto' more than once; keep one",
            id="double-auto",
        ),
    ],
)
def test_expand_labels_rejects(labels: list[str], facts: HostFacts, message: str) -> None:
    with pytest.raises(HostLabelError) as raised:
        expand_labels(labels, facts, pool="gpu-box")
    assert str(raised.value) == message
    assert isinstance(raised.value, ValueError)


_LABEL = st.one_of(
    st.sampled_from(
        [
            *("auto", "AUTO", "Auto", "x64", "X64", "arm64", "arm", "x86", "gpu", "GPU", "cuda"),
            *("linux", "Linux", "self-hosted", "cpu-only", "CPU-Only", "openvino"),
        ]
    ),
    st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=8),
)
_FACTS = st.builds(
    HostFacts,
    arch=st.sampled_from([None, *sorted(ARCH_LABELS)]),
    accelerators=st.frozensets(st.sampled_from(sorted(ACCELERATOR_LABELS))),
)


@given(labels=st.lists(_LABEL, max_size=10), facts=_FACTS)
def test_expand_labels_properties(labels: list[str], facts: HostFacts) -> None:
    keys = [label.lower() for label in labels]
    try:
        result = expand_labels(labels, facts, pool="p")
    except HostLabelError:
        archs = {key for key in keys if key in ARCH_LABELS}
        assert (
            keys.count("auto") > 1
            or len(archs) > 1
            or (facts.arch is not None and archs and archs != {facts.arch})
        )
        return
    result_keys = [label.lower() for label in result]
    assert "auto" not in result_keys
    assert len(set(result_keys)) == len(result_keys)
    assert {key for key in keys if key != "auto"} <= set(result_keys)
    if "auto" in keys:
        assert set(facts.labels()) <= set(result_keys)
    else:
        assert set(result_keys) == set(keys)
