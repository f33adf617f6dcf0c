"""The SSH backend's memory of what each node holds (``providers/ssh/memory.py``), on files:
written privately and only when something changed, read back by the next provider, and a file
it cannot use or write set aside with a warning (the pool works on)."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from runnerscale.model import Instance
from runnerscale.providers.ssh.memory import MEMORY_VERSION, NodeMemory


def instance(name: str, *, running: bool = True) -> Instance:
    return Instance(
        id=name,
        runner_name=name,
        pool="vps",
        running=running,
        exit_code=None if running else 1,
        detail="its last log lines: not kept",
    )


def memory(state_dir: Path, now: float = 100.0) -> NodeMemory:
    return NodeMemory(state_dir, "rs-1", "vps", clock=lambda: now)


def test_it_keeps_each_nodes_runners_and_writes_only_when_they_change(tmp_path: Path) -> None:
    kept = memory(tmp_path)
    assert kept.load() == {}
    kept.update({"n1": [], "n2": []})
    assert not kept.path.exists()  # nothing held: nothing to keep

    kept.update({"n1": [instance("a"), instance("b", running=False)], "n2": []})
    assert kept.path == tmp_path / "ssh" / "rs-1" / "vps.json"
    assert stat.S_IMODE(kept.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.path.parent.stat().st_mode) == 0o700
    assert "log lines" not in kept.path.read_text()
    written = kept.path.stat().st_ino
    kept.update({"n1": [instance("b"), instance("a")], "n2": []})  # (the same runners)
    assert kept.path.stat().st_ino == written

    later = memory(tmp_path, now=200.0)
    recalled = later.load()
    assert list(recalled) == ["n1"]
    assert recalled["n1"].recorded_at == 100.0
    assert [(i.runner_name, i.running) for i in recalled["n1"].instances] == [
        ("a", True),
        ("b", True),
    ]
    later.update({"n1": [instance("a"), instance("b")], "n2": []})
    assert later.path.stat().st_ino == written  # what it read is what it holds

    later.update({"n1": [instance("a")], "n2": [instance("c")], "n3": []})
    data = json.loads(later.path.read_text())
    assert data["version"] == MEMORY_VERSION
    assert data["nodes"] == {
        "n1": {"recorded_at": 200.0, "instances": [{"id": "a", "runner_name": "a"}]},
        "n2": {"recorded_at": 200.0, "instances": [{"id": "c", "runner_name": "c"}]},
    }


@pytest.mark.parametrize(
    "text", ["{broken", '{"version": 99, "nodes": {}}', '{"version": 1, "nodes": {"n1": {}}}']
)
def test_a_file_it_cannot_read_is_set_aside(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    kept = memory(tmp_path)
    kept.path.parent.mkdir(parents=True)
    kept.path.write_text(text)
    assert kept.load() == {}
    assert "is not a memory of its nodes this version reads" in caplog.text
    kept.update({"n1": [instance("a")]})
    assert memory(tmp_path).load()["n1"].instances[0].runner_name == "a"


def test_a_file_it_cannot_write_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runnerscale.providers.ssh")
    (tmp_path / "ssh").write_text("not a folder")
    kept = memory(tmp_path)
    kept.update({"n1": [instance("a")]})
    kept.update({"n1": [instance("a"), instance("b")]})
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert "a restart while a node is down would forget its runners" in warned[0].getMessage()
    (tmp_path / "ssh").unlink()
    kept.update({"n1": [instance("a"), instance("b")]})
    assert "kept in" in caplog.records[-1].getMessage()
    assert len(memory(tmp_path).load()["n1"].instances) == 2
