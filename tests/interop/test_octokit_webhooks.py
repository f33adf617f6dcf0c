"""Webhooks of each kind, created with Octokit and received by @octokit/webhooks.

Phase 2 of the interop tests. It relies on the simulator's repository and organisation hooks
REST API (``/repos/{o}/{r}/hooks...``, ``/orgs/{org}/hooks...``: create, list, get, delete,
ping, deliveries, redelivery) and on the ``X-GitHub-Hook-Installation-Target-Type`` header of
each kind of hook.
"""

from __future__ import annotations

import httpx
import pytest

from tests.interop.conftest import Node, sim_post

pytestmark = pytest.mark.timeout(180)

OWNER = "acme"
REPO = "app"
SECRETS = {"repo": "repo-secret", "org": "org-secret", "global": "global-secret"}


async def test_hooks_of_each_kind_are_verified_by_octokit_webhooks(
    node: Node, node_env: dict[str, str], control: httpx.AsyncClient
) -> None:
    [repository] = await sim_post(control, "/_sim/repos", [{"repo": f"{OWNER}/{REPO}"}])
    params = {
        "owner": OWNER,
        "repo": REPO,
        "secrets": SECRETS,
        # Each hook's ping (none for the simulator's own hook) and the job's "queued".
        "expect": {"/repo": 2, "/repo-bad": 2, "/org": 2, "/global": 1},
        "timeout": 30,
    }
    async with node.start("webhooks.mjs", params, node_env) as running:
        ready = await running.next_json()
        global_hook = await sim_post(
            control, "/_sim/hooks", {"url": f"{ready['url']}/global", "secret": SECRETS["global"]}
        )
        [job] = await sim_post(
            control,
            "/_sim/jobs",
            [{"repo": f"{OWNER}/{REPO}", "labels": ["self-hosted", "linux"], "duration": 1}],
        )
        result = await running.result()

    hooks = result["hooks"]
    assert hooks == ready["hooks"]
    arrived = result["arrived"]

    def at(path: str) -> list[tuple[str, int]]:
        return [(a["event"], a["status"]) for a in arrived if a["path"] == path]

    # @octokit/webhooks accepted (200) every delivery signed with its secret ...
    assert at("/repo") == [("ping", 200), ("workflow_job", 200), ("workflow_job", 200)]
    assert at("/org") == [("ping", 200), ("workflow_job", 200), ("ping", 200)]
    assert at("/global") == [("workflow_job", 200)]
    # ... and refused (400) those signed with another.
    assert at("/repo-bad") == [("ping", 400), ("workflow_job", 400)]

    [org_id] = {v["organization"] for v in result["verified"] if v["kind"] == "org"}
    assert {v["repository"] for v in result["verified"] if v["kind"] == "repo"} == {
        repository["id"]
    }
    targets = {(a["path"], a["hookId"], a["targetType"], a["targetId"]) for a in arrived}
    assert targets == {
        ("/repo", str(hooks["repo"]), "repository", str(repository["id"])),
        ("/repo-bad", str(hooks["bad"]), "repository", str(repository["id"])),
        ("/org", str(hooks["org"]), "organization", str(org_id)),
        # The simulator's own hook stands for the App's webhook (App mode here).
        ("/global", str(global_hook["id"]), "integration", str(node_env["GITHUB_APP_ID"])),
    }
    assert {a["userAgent"].split("/")[0] for a in arrived} == {"GitHub-Hookshot"}

    verified = [(v["kind"], v["name"], v["action"]) for v in result["verified"]]
    assert sorted(verified) == sorted(
        [
            ("repo", "ping", None),
            ("repo", "workflow_job", "queued"),
            ("repo", "workflow_job", "queued"),  # the redelivery
            ("org", "ping", None),
            ("org", "workflow_job", "queued"),
            ("org", "ping", None),
            ("global", "workflow_job", "queued"),
        ]
    )
    pings = [v for v in result["verified"] if v["name"] == "ping"]
    assert {(v["kind"], v["hookId"]) for v in pings} == {
        ("repo", hooks["repo"]),
        ("org", hooks["org"]),
    }

    # The redelivery is the same delivery (GUID) again.
    repo_jobs = [a["delivery"] for a in arrived if a["path"] == "/repo" and a["event"] != "ping"]
    assert repo_jobs == [result["redeliver"]["guid"]] * 2
    assert result["redeliver"]["status"] == 202

    deliveries = result["deliveries"]
    assert {(d["event"], d["action"], d["status_code"]) for d in deliveries["repo"]} == {
        ("ping", None, 200),
        ("workflow_job", "queued", 200),
    }
    assert {(d["event"], d["status_code"]) for d in deliveries["bad"]} == {
        ("ping", 400),
        ("workflow_job", 400),
    }
    assert {(d["event"], d["status_code"]) for d in deliveries["org"]} == {
        ("ping", 200),
        ("workflow_job", 200),
    }
    assert result["ping"] == 204
    assert result["got"] == {
        "id": hooks["repo"],
        "events": ["workflow_job"],
        "secret": "********",
        "contentType": "json",
    }
    assert sorted(result["listed"]) == sorted([hooks["repo"], hooks["bad"]])
    assert result["removed"] == 204
    assert result["remaining"] == [hooks["repo"]]
    assert job["status"] == "queued"
