// Shared by the interop scripts. A script reads the simulator's address and credentials from
// the environment, its scenario from a JSON argument (argv[2]), and prints one JSON result
// line on stdout for the pytest test to assert on. Errors go to stderr with a non-zero exit.
import { Octokit } from "@octokit/rest";

export function env(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}

export const baseUrl = env("GITHUB_API_URL");

/** An Octokit (or a class made with Octokit.plugin) authenticated with the PAT. */
export function tokenOctokit(OctokitClass = Octokit, options = {}) {
  return new OctokitClass({
    baseUrl,
    auth: env("GITHUB_TOKEN"),
    userAgent: "runnerscale-interop",
    ...options,
  });
}

/** The App's id and private key, as @octokit/auth-app takes them. */
export function appCredentials() {
  return { appId: Number(env("GITHUB_APP_ID")), privateKey: env("GITHUB_APP_PRIVATE_KEY") };
}

/** What a test needs to know about an Octokit RequestError. */
export function describeError(error) {
  if (error?.name !== "HttpError") {
    throw error;
  }
  const headers = error.response?.headers ?? {};
  return {
    status: error.status,
    message: error.response?.data?.message ?? error.message,
    headers: Object.fromEntries(
      Object.entries(headers).filter(([name]) => name.startsWith("x-ratelimit-") || name === "retry-after"),
    ),
  };
}

/** Run `fn(params)` and print its result as one JSON line. */
export async function main(fn) {
  const params = JSON.parse(process.argv[2] ?? "{}");
  try {
    const result = await fn(params);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (error) {
    console.error(error);
    process.exitCode = 1;
  }
}
