// Webhooks end to end with @octokit/webhooks: a node receiver (createNodeMiddleware, which
// checks X-Hub-Signature-256 against its secret) for each kind of hook; the repository and
// organisation hooks are created with Octokit (repos.createWebhook / orgs.createWebhook).
//
// Prints a progress line {"ready": ...} once the hooks exist, so the test can add the
// simulator's global hook and queue a job; then waits until `expect` deliveries arrived at
// each path, looks at the hooks' deliveries over REST, redelivers one, and prints its result.
import http from "node:http";
import { once } from "node:events";
import { Webhooks, createNodeMiddleware } from "@octokit/webhooks";
import { main, tokenOctokit } from "./lib.mjs";

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

main(async ({ owner, repo, secrets, expect, timeout }) => {
  // One Webhooks (one secret) per kind; /repo-bad is a repository hook created with another
  // secret, so its deliveries must fail verification.
  const webhooks = Object.fromEntries(
    Object.entries(secrets).map(([kind, secret]) => [kind, new Webhooks({ secret })]),
  );
  const routes = {
    "/repo": "repo",
    "/org": "org",
    "/global": "global",
    "/repo-bad": "repo",
  };
  const verified = [];
  for (const [kind, hooks] of Object.entries(webhooks)) {
    hooks.onAny(({ id, name, payload }) => {
      verified.push({
        kind,
        id,
        name,
        action: payload.action ?? null,
        hookId: payload.hook_id ?? null,
        organization: payload.organization?.id ?? null,
        repository: payload.repository?.id ?? null,
      });
    });
  }
  const middleware = Object.fromEntries(
    Object.entries(routes).map(([path, kind]) => [
      path,
      createNodeMiddleware(webhooks[kind], { path, log: { debug() {}, info() {}, warn() {}, error() {} } }),
    ]),
  );
  const arrived = [];
  const server = http.createServer(async (request, response) => {
    const path = new URL(request.url, "http://receiver").pathname;
    const handle = middleware[path];
    if (!handle) {
      response.writeHead(404).end();
      return;
    }
    await handle(request, response);
    arrived.push({
      path,
      status: response.statusCode,
      event: request.headers["x-github-event"],
      delivery: request.headers["x-github-delivery"],
      hookId: request.headers["x-github-hook-id"],
      targetType: request.headers["x-github-hook-installation-target-type"],
      targetId: request.headers["x-github-hook-installation-target-id"],
      userAgent: request.headers["user-agent"],
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const url = `http://127.0.0.1:${server.address().port}`;

  try {
    const octokit = tokenOctokit();
    const hookBody = (path, secret) => ({
      name: "web",
      active: true,
      events: ["workflow_job"],
      config: { url: `${url}${path}`, content_type: "json", secret, insecure_ssl: "0" },
    });
    const { data: repoHook } = await octokit.rest.repos.createWebhook({ owner, repo, ...hookBody("/repo", secrets.repo) });
    const { data: badHook } = await octokit.rest.repos.createWebhook({
      owner,
      repo,
      ...hookBody("/repo-bad", "not-the-receivers-secret"),
    });
    const { data: orgHook } = await octokit.rest.orgs.createWebhook({ org: owner, ...hookBody("/org", secrets.org) });
    process.stdout.write(`${JSON.stringify({ ready: true, url, hooks: { repo: repoHook.id, bad: badHook.id, org: orgHook.id } })}\n`);

    const count = (path) => arrived.filter((a) => a.path === path).length;
    const deadline = Date.now() + timeout * 1000;
    while (Object.entries(expect).some(([path, n]) => count(path) < n) && Date.now() < deadline) {
      await sleep(50);
    }

    // What GitHub recorded, over REST, and a redelivery of the repository hook's job event.
    const repoDeliveries = await octokit.paginate(octokit.rest.repos.listWebhookDeliveries, {
      owner,
      repo,
      hook_id: repoHook.id,
    });
    const badDeliveries = await octokit.paginate(octokit.rest.repos.listWebhookDeliveries, {
      owner,
      repo,
      hook_id: badHook.id,
    });
    const orgDeliveries = await octokit.paginate(octokit.rest.orgs.listWebhookDeliveries, {
      org: owner,
      hook_id: orgHook.id,
    });
    const jobDelivery = repoDeliveries.find((d) => d.event === "workflow_job");
    const redeliver = await octokit.rest.repos.redeliverWebhookDelivery({
      owner,
      repo,
      hook_id: repoHook.id,
      delivery_id: jobDelivery.id,
    });
    const before = count("/repo");
    while (count("/repo") === before && Date.now() < deadline) {
      await sleep(50);
    }
    const ping = await octokit.rest.orgs.pingWebhook({ org: owner, hook_id: orgHook.id });
    const pings = arrived.filter((a) => a.path === "/org" && a.event === "ping").length;
    while (arrived.filter((a) => a.path === "/org" && a.event === "ping").length === pings && Date.now() < deadline) {
      await sleep(50);
    }
    const { data: got } = await octokit.rest.repos.getWebhook({ owner, repo, hook_id: repoHook.id });
    const hooks = await octokit.paginate(octokit.rest.repos.listWebhooks, { owner, repo });
    const removed = await octokit.rest.repos.deleteWebhook({ owner, repo, hook_id: badHook.id });
    const after = await octokit.paginate(octokit.rest.repos.listWebhooks, { owner, repo });

    const summary = (deliveries) =>
      deliveries.map(({ guid, event, action, status_code, redelivery }) => ({ guid, event, action, status_code, redelivery }));
    return {
      hooks: { repo: repoHook.id, bad: badHook.id, org: orgHook.id },
      arrived,
      verified,
      deliveries: { repo: summary(repoDeliveries), bad: summary(badDeliveries), org: summary(orgDeliveries) },
      redeliver: { status: redeliver.status, guid: jobDelivery.guid },
      ping: ping.status,
      got: { id: got.id, events: got.events, secret: got.config.secret, contentType: got.config.content_type },
      listed: hooks.map((hook) => hook.id),
      removed: removed.status,
      remaining: after.map((hook) => hook.id),
    };
  } finally {
    server.close();
    server.closeAllConnections();
  }
});
