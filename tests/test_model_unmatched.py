"""explain_unmatched: why no pool serves a job, as one deterministic line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runnerscale.model import PoolSpec, explain_unmatched, match_pool, normalize_labels


def pool(name: str, *labels: str, order: int = 0) -> PoolSpec:
    return PoolSpec(name=name, labels=normalize_labels(labels), max_runners=4, order=order)


LINUX_X64 = pool("linux-x64", "self-hosted", "linux", "x64")
CPU_X64 = pool("cpu-x64", "self-hosted", "linux", "x64", "cpu-only")
CPU_ARM = pool("cpu-arm", "self-hosted", "linux", "arm", "cpu-only", order=1)
GPU_WIN = pool("gpu-win", "self-hosted", "windows", "x64", "gpu", order=1)
NO_ARCH = pool("plain", "self-hosted", "linux")


@pytest.mark.parametrize(
    ("pools", "job", "expected"),
    [
        pytest.param([LINUX_X64], [], "the job names no labels", id="no-labels"),
        pytest.param([], ["  ", ""], "the job names no labels", id="blank-labels-no-pools"),
        pytest.param([], ["self-hosted"], "no pools are configured", id="no-pools"),
        pytest.param(
            [LINUX_X64, GPU_WIN],
            ["self-hosted", "linux", "arm64"],
            "it needs arm64, but every pool here runs on x64",
            id="arch-single",
        ),
        pytest.param(
            [LINUX_X64],
            ["Self-Hosted", "ARM64"],
            "it needs arm64, but every pool here runs on x64",
            id="arch-case-insensitive",
        ),
        pytest.param(
            [LINUX_X64, CPU_ARM],
            ["self-hosted", "arm64"],
            "it needs arm64, but the pools here run on arm, x64",
            id="arch-several",
        ),
        pytest.param(
            [LINUX_X64, NO_ARCH],
            ["self-hosted", "arm64"],
            "it needs arm64, but the pools here run on x64",
            id="arch-some-pools-undeclared",
        ),
        pytest.param(
            [NO_ARCH],
            ["self-hosted", "x64"],
            "it needs x64, but no pool declares an architecture",
            id="arch-none-declared",
        ),
        pytest.param(
            [CPU_X64],
            ["self-hosted", "arm64", "gpu"],
            "it needs arm64, but every pool here runs on x64",
            id="arch-before-accelerator",
        ),
        pytest.param(
            [CPU_X64, CPU_ARM],
            ["self-hosted", "x64", "gpu"],
            "it needs gpu, which no pool offers (pools here are cpu-only)",
            id="accelerator-all-cpu-only",
        ),
        pytest.param(
            [LINUX_X64, CPU_ARM, CPU_X64],
            ["self-hosted", "CUDA", "gpu"],
            "it needs cuda, gpu, which no pool offers (cpu-only pools: 'cpu-arm', 'cpu-x64')",
            id="accelerator-some-cpu-only",
        ),
        pytest.param(
            [LINUX_X64],
            ["self-hosted", "x64", "rocm"],
            "it needs rocm, which no pool offers",
            id="accelerator-no-cpu-only",
        ),
        pytest.param(
            [LINUX_X64, GPU_WIN],
            ["self-hosted", "linux", "x64", "gpu", "large"],
            "closest pool 'linux-x64' lacks: gpu, large",
            id="closest-tie-by-order",
        ),
        pytest.param(
            [pool("b", "linux", order=2), pool("a", "linux", order=1)],
            ["linux", "large"],
            "closest pool 'a' lacks: large",
            id="closest-tie-by-order-field",
        ),
        pytest.param(
            [pool("b", "linux"), pool("a", "linux")],
            ["linux", "large"],
            "closest pool 'b' lacks: large",
            id="closest-tie-by-position",
        ),
        pytest.param(
            [pool("far", "linux", order=0), pool("near", "linux", "large", "x64", order=1)],
            ["linux", "large", "xl", "X64"],
            "closest pool 'near' lacks: xl",
            id="closest-fewest-missing",
        ),
        pytest.param(
            [LINUX_X64],
            ["self-hosted", "linux"],
            "pool 'linux-x64' serves it",
            id="actually-served",
        ),
    ],
)
def test_explain_unmatched(pools: list[PoolSpec], job: list[str], expected: str) -> None:
    assert explain_unmatched(pools, job) == expected


_LABELS = st.lists(
    st.sampled_from(
        ["self-hosted", "linux", "windows", "x64", "arm64", "gpu", "cuda", "cpu-only", "large"]
    ),
    max_size=5,
)


@given(
    pools=st.lists(_LABELS, max_size=4).map(
        lambda sets: [pool(f"p{index}", *labels) for index, labels in enumerate(sets)]
    ),
    job=_LABELS,
)
def test_explain_unmatched_is_deterministic_and_agrees_with_match_pool(
    pools: list[PoolSpec], job: list[str]
) -> None:
    reason = explain_unmatched(pools, job)
    assert reason == explain_unmatched(pools, list(reversed(job)))
    assert reason == explain_unmatched(pools, [label.upper() for label in job])
    assert "\n" not in reason
    assert reason.endswith("serves it") == (match_pool(pools, job) is not None)
