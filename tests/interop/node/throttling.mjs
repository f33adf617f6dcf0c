// @octokit/plugin-throttling against the simulator's rate limits: every call of the
// onRateLimit / onSecondaryRateLimit handlers is recorded with the retry-after the plugin
// derived from the answer; the handler asks for a retry while retryCount < `retries`.
import { Octokit } from "@octokit/rest";
import { throttling } from "@octokit/plugin-throttling";
import { describeError, main, tokenOctokit } from "./lib.mjs";

const Throttled = Octokit.plugin(throttling);

main(async ({ owner, repo, requests, retries }) => {
  const calls = [];
  const handler = (kind) => (retryAfter, options, _octokit, retryCount) => {
    calls.push({ kind, retryAfter, retryCount, at: Date.now() / 1000, method: options.method, url: options.url });
    return retryCount < retries;
  };
  const octokit = tokenOctokit(Throttled, {
    throttle: { onRateLimit: handler("primary"), onSecondaryRateLimit: handler("secondary") },
  });
  const results = [];
  for (let i = 0; i < requests; i++) {
    const started = Date.now();
    try {
      const response = await octokit.rest.actions.listSelfHostedRunnersForRepo({ owner, repo });
      results.push({ status: response.status, remaining: response.headers["x-ratelimit-remaining"] });
    } catch (error) {
      results.push(describeError(error));
    }
    results.at(-1).elapsed = (Date.now() - started) / 1000;
  }
  return { calls, results };
});
