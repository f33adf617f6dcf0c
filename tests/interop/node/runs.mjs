// Workflow runs and jobs the way an autoscaler's poller sees them: list the runs (paginated),
// list a run's jobs, get a job, cancel the run, re-run a job, and the errors on the way.
import { describeError, main, tokenOctokit } from "./lib.mjs";

async function attempt(call) {
  try {
    const { status } = await call();
    return { status };
  } catch (error) {
    return describeError(error);
  }
}

main(async ({ owner, repo, runId, perPage }) => {
  const octokit = tokenOctokit();
  const { actions } = octokit.rest;
  const runs = await octokit.paginate(actions.listWorkflowRunsForRepo, { owner, repo, per_page: perPage });
  const queued = await octokit.paginate(actions.listWorkflowRunsForRepo, {
    owner,
    repo,
    status: "queued",
    per_page: 100,
  });
  const { data: jobList } = await actions.listJobsForWorkflowRun({ owner, repo, run_id: runId });
  const firstJob = jobList.jobs[0].id;
  const { data: job } = await actions.getJobForWorkflowRun({ owner, repo, job_id: firstJob });
  const rerunWhileQueued = await attempt(() => actions.reRunJobForWorkflowRun({ owner, repo, job_id: firstJob }));
  const cancel = await attempt(() => actions.cancelWorkflowRun({ owner, repo, run_id: runId }));
  const { data: cancelledJob } = await actions.getJobForWorkflowRun({ owner, repo, job_id: firstJob });
  const cancelAgain = await attempt(() => actions.cancelWorkflowRun({ owner, repo, run_id: runId }));
  const rerun = await attempt(() => actions.reRunJobForWorkflowRun({ owner, repo, job_id: firstJob }));
  const allJobs = await octokit.paginate(actions.listJobsForWorkflowRun, {
    owner,
    repo,
    run_id: runId,
    filter: "all",
  });
  const latestJobs = await octokit.paginate(actions.listJobsForWorkflowRun, { owner, repo, run_id: runId });
  const { data: after } = await actions.listWorkflowRunsForRepo({ owner, repo, per_page: 1 });
  const pick = ({ id, run_id, run_attempt, name, status, conclusion, labels }) => ({
    id,
    run_id,
    run_attempt,
    name,
    status,
    conclusion,
    labels,
  });
  return {
    runs: runs.map(({ id, status, run_number }) => ({ id, status, run_number })),
    queuedCount: queued.length,
    jobs: { totalCount: jobList.total_count, jobs: jobList.jobs.map(pick) },
    job: pick(job),
    rerunWhileQueued,
    cancel,
    cancelledJob: pick(cancelledJob),
    cancelAgain,
    rerun,
    allJobs: allJobs.map(pick),
    latestJobs: latestJobs.map(pick),
    newestRun: after.workflow_runs.map(({ id, status, run_attempt }) => ({ id, status, run_attempt }))[0],
  };
});
