// A GitHub App through @octokit/auth-app: the App's JWT for the App endpoints, then an
// installation token (minted and refreshed by the auth strategy) for the runner endpoints.
import { Octokit } from "@octokit/rest";
import { createAppAuth } from "@octokit/auth-app";
import { appCredentials, baseUrl, describeError, main } from "./lib.mjs";

main(async ({ org, repo, otherOrg }) => {
  const credentials = appCredentials();
  const app = new Octokit({ baseUrl, authStrategy: createAppAuth, auth: credentials });
  const appAuthentication = await app.auth({ type: "app" });
  const installations = await app.paginate(app.rest.apps.listInstallations);
  const { data: orgInstallation } = await app.rest.apps.getOrgInstallation({ org });
  const { data: repoInstallation } = await app.rest.apps.getRepoInstallation({ owner: org, repo });

  const installation = new Octokit({
    baseUrl,
    authStrategy: createAppAuth,
    auth: { ...credentials, installationId: orgInstallation.id },
  });
  const token = await installation.auth({ type: "installation" });
  const { data: jit, status: jitStatus } = await installation.rest.actions.generateRunnerJitconfigForOrg({
    org,
    name: "app-runner",
    labels: ["linux"],
    runner_group_id: 1,
  });
  const runners = await installation.paginate(installation.rest.actions.listSelfHostedRunnersForOrg, { org });
  const repositories = await installation.paginate(installation.rest.apps.listReposAccessibleToInstallation);
  let otherOwner;
  try {
    await installation.rest.actions.listSelfHostedRunnersForOrg({ org: otherOrg });
    otherOwner = { status: 200 };
  } catch (error) {
    otherOwner = describeError(error);
  }
  // The App's JWT (here given to Octokit as a plain token) is refused where an installation
  // token is needed.
  let jwtOnRunners;
  try {
    const jwtOctokit = new Octokit({ baseUrl, auth: appAuthentication.token });
    await jwtOctokit.rest.actions.listSelfHostedRunnersForOrg({ org });
    jwtOnRunners = { status: 200 };
  } catch (error) {
    jwtOnRunners = describeError(error);
  }
  return {
    appAuthentication: { type: appAuthentication.type, appId: appAuthentication.appId, jwtParts: appAuthentication.token.split(".").length },
    installations: installations.map(({ id, account, app_id }) => ({ id, login: account.login, app_id })),
    orgInstallation: orgInstallation.id,
    repoInstallation: repoInstallation.id,
    token: {
      type: token.type,
      tokenType: token.tokenType,
      prefix: token.token.slice(0, 4),
      installationId: token.installationId,
      expiresAt: token.expiresAt,
      permissions: token.permissions,
      repositorySelection: token.repositorySelection,
    },
    jit: { status: jitStatus, runner: jit.runner.name },
    runners: runners.map((runner) => runner.name),
    repositories: repositories.map((repository) => repository.full_name),
    otherOwner,
    jwtOnRunners,
  };
});
