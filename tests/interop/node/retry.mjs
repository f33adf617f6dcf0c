// @octokit/plugin-retry against injected 5xx answers: `requests` GETs of the repository's
// runners with `retries` retries each. The fetch Octokit uses is wrapped to see every attempt.
import { Octokit } from "@octokit/rest";
import { retry } from "@octokit/plugin-retry";
import { describeError, main, tokenOctokit } from "./lib.mjs";

const Retrying = Octokit.plugin(retry);

main(async ({ owner, repo, requests, retries }) => {
  const attempts = [];
  const countingFetch = async (url, init) => {
    const response = await fetch(url, init);
    attempts.push(response.status);
    return response;
  };
  const octokit = tokenOctokit(Retrying, {
    // Milliseconds per unit of the plugin's quadratic back-off (1, 4, 9, ...): short for a test.
    retry: { retries, retryAfterBaseValue: 10 },
    request: { fetch: countingFetch },
  });
  const results = [];
  for (let i = 0; i < requests; i++) {
    try {
      const response = await octokit.rest.actions.listSelfHostedRunnersForRepo({ owner, repo });
      results.push({ status: response.status });
    } catch (error) {
      results.push(describeError(error));
    }
  }
  return { attempts, results };
});
