"""Workflow runs and jobs over REST: list runs and a run's jobs, get a job, cancel a run,
re-run a job, and a job's check-run annotations."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from runnerscale.fakegithub import shapes
from runnerscale.fakegithub.api import (
    REPO,
    Reply,
    Simulator,
    int_param,
    operation,
    paginate,
    read_json,
)
from runnerscale.fakegithub.auth import Caller


async def list_runs(sim: Simulator, request: Request, caller: Caller) -> Reply:
    repo = sim.world.repo(request.path_params["owner"], request.path_params["repo"])
    runs = sim.world.runs_of(repo, request.query_params.get("status") or None)
    page, links = paginate(request, runs)
    rendered = [shapes.workflow_run(run, *sim.world.run_status(run), sim.urls) for run in page]
    return Reply(200, shapes.paginated("workflow_runs", rendered, len(runs)), links)


async def list_run_jobs(sim: Simulator, request: Request, caller: Caller) -> Reply:
    repo = sim.world.repo(request.path_params["owner"], request.path_params["repo"])
    run = sim.world.run_in(repo, int_param(request, "run_id"))
    jobs = sim.world.run_jobs(run)
    if request.query_params.get("filter", "latest") == "latest":
        jobs = [job for job in jobs if job.run_attempt == run.run_attempt]
    page, links = paginate(request, jobs)
    return Reply(
        200, shapes.paginated("jobs", [shapes.job(j, sim.urls) for j in page], len(jobs)), links
    )


async def get_job(sim: Simulator, request: Request, caller: Caller) -> Reply:
    repo = sim.world.repo(request.path_params["owner"], request.path_params["repo"])
    return Reply(200, shapes.job(sim.world.job_in(repo, int_param(request, "job_id")), sim.urls))


async def rerun_job(sim: Simulator, request: Request, caller: Caller) -> Reply:
    repo = sim.world.repo(request.path_params["owner"], request.path_params["repo"])
    await read_json(request, optional=True)
    sim.world.rerun_job(sim.world.job_in(repo, int_param(request, "job_id")))
    return Reply(201, {})


async def list_annotations(sim: Simulator, request: Request, caller: Caller) -> Reply:
    """A job's check run is the job: its id is the job's (``check_run_url``)."""
    repo = sim.world.repo(request.path_params["owner"], request.path_params["repo"])
    job = sim.world.job_in(repo, int_param(request, "check_run_id"))
    annotations = shapes.check_annotations(job, sim.urls)
    page, links = paginate(request, annotations)
    return Reply(200, page, links)


async def cancel_run(sim: Simulator, request: Request, caller: Caller) -> Reply:
    repo = sim.world.repo(request.path_params["owner"], request.path_params["repo"])
    sim.world.cancel_run(sim.world.run_in(repo, int_param(request, "run_id")))
    return Reply(202, {})


def routes() -> list[Route]:
    """The workflow run and job operations."""
    runs = f"{REPO}/actions/runs"
    jobs = f"{REPO}/actions/jobs"
    return [
        operation("GET", runs, "actions/list-workflow-runs-for-repo", list_runs),
        operation(
            "GET", f"{runs}/{{run_id}}/jobs", "actions/list-jobs-for-workflow-run", list_run_jobs
        ),
        operation("POST", f"{runs}/{{run_id}}/cancel", "actions/cancel-workflow-run", cancel_run),
        operation("GET", f"{jobs}/{{job_id}}", "actions/get-job-for-workflow-run", get_job),
        operation(
            "POST", f"{jobs}/{{job_id}}/rerun", "actions/re-run-job-for-workflow-run", rerun_job
        ),
        operation(
            "GET",
            f"{REPO}/check-runs/{{check_run_id}}/annotations",
            "checks/list-annotations",
            list_annotations,
        ),
    ]
