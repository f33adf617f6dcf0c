// Create `count` JIT runners for a repository and as many for its organisation, then list
// both with octokit.paginate (and the organisation's page by page with paginate.iterator).
import { main, tokenOctokit } from "./lib.mjs";

main(async ({ owner, repo, count, perPage }) => {
  const octokit = tokenOctokit();
  const created = { repo: [], org: [] };
  for (let i = 0; i < count; i++) {
    const { data, status } = await octokit.rest.actions.generateRunnerJitconfigForRepo({
      owner,
      repo,
      name: `repo-runner-${i}`,
      labels: ["linux", "x64"],
      runner_group_id: 1,
    });
    if (status !== 201 || typeof data.encoded_jit_config !== "string") {
      throw new Error(`unexpected JIT answer ${status}`);
    }
    created.repo.push(data.runner.id);
  }
  for (let i = 0; i < count; i++) {
    const { data } = await octokit.rest.actions.generateRunnerJitconfigForOrg({
      org: owner,
      name: `org-runner-${i}`,
      labels: ["linux"],
      runner_group_id: 1,
    });
    created.org.push(data.runner.id);
  }

  const repoRunners = await octokit.paginate(octokit.rest.actions.listSelfHostedRunnersForRepo, {
    owner,
    repo,
    per_page: perPage,
  });
  const orgPages = [];
  for await (const response of octokit.paginate.iterator(
    octokit.rest.actions.listSelfHostedRunnersForOrg,
    { org: owner, per_page: perPage },
  )) {
    orgPages.push({ ids: response.data.map((runner) => runner.id), totalCount: response.data.total_count });
  }
  return {
    created,
    repo: {
      ids: repoRunners.map((runner) => runner.id),
      names: repoRunners.map((runner) => runner.name),
      labels: repoRunners[0]?.labels.map((label) => label.name),
      status: [...new Set(repoRunners.map((runner) => runner.status))],
    },
    orgPages,
  };
});
