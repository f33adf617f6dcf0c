
"use strict";
// The status page: reads the status API (same origin) every few seconds and lays it out.
// It decides nothing; every figure and sentence is the daemon's. What came from outside (a
// repository, a job's labels, a reason) is only ever set as text, never parsed as HTML.
(function () {
  const EVERY_MS = 3000;
  const KEY = "runnerscale-dashboard-key";
  const SVG = "http://www.w3.org/2000/svg";
  const POOL_COLOURS = ["#2f6db5", "#d5622a", "#3f9b5a", "#8e4fb4", "#c23b7a", "#1f9aa5", "#8a7a23"];

  // The key the dashboard's link carries after '#': kept in this tab only, and taken out of
  // the address bar (a fragment is never sent to a server, nor in a Referer).
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.has("key")) {
    sessionStorage.setItem(KEY, fragment.get("key"));
    history.replaceState(null, "", location.pathname + location.search);
  }

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    for (const child of children) node.append(child instanceof Node ? child : String(child));
    return node;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function seconds(value) {
    const whole = Math.max(0, Math.round(value));
    if (whole < 60) return whole + "s";
    if (whole < 3600) return Math.floor(whole / 60) + "m " + String(whole % 60).padStart(2, "0") + "s";
    return Math.floor(whole / 3600) + "h " + String(Math.floor((whole % 3600) / 60)).padStart(2, "0") + "m";
  }

  function clock(epoch) {
    return new Date(epoch * 1000).toLocaleTimeString([], { hour12: false });
  }

  function colourOf(pools) {
    const colours = new Map(pools.map((pool, index) => [pool.name, POOL_COLOURS[index % POOL_COLOURS.length]]));
    return (name) => colours.get(name) || "#888888";
  }

  function bar(parts, total) {
    const box = el("div", { class: "bar" });
    for (const [kind, count] of parts) {
      const part = el("span", { class: kind, title: kind + ": " + count });
      part.style.width = (total > 0 ? Math.min(100, (100 * count) / total) : 0) + "%";
      box.append(part);
    }
    return box;
  }

  function showTable(section, rows) {
    const table = section.querySelector("table");
    table.querySelector("tbody").replaceChildren(...rows);
    table.hidden = rows.length === 0;
    const empty = section.querySelector(".empty");
    if (empty) empty.hidden = rows.length > 0;
  }

  function renderLeadership(status) {
    const where = document.getElementById("leadership");
    if (!("leading" in status)) return where.replaceChildren();
    if (status.leading) where.textContent = "this daemon leads (" + status.instance + ")";
    else if (status.leader) where.textContent = "stands by; " + status.leader.id + " leads";
    else where.textContent = "stands by; nobody leads right now";
  }

  // What a pool's runners wait for before their creation begins, in the words of
  // `runnerscale status` (its `waiting` counts them by kind).
  const WAITING_FOR = [
    ["registration_budget", "for GitHub's runner registration budget to reset"],
    ["create_slot", "for a free creation slot"],
  ];

  // The pool's runners decided on (counted in booting) whose creation has not begun: how many,
  // the kinds they wait for, and the sentence `runnerscale status` says of them ("" if none).
  function waitingOf(pool) {
    const counts = pool.waiting || {};
    const kinds = WAITING_FOR.filter(([kind]) => counts[kind] > 0);
    return {
      count: kinds.reduce((sum, [kind]) => sum + counts[kind], 0),
      kinds: kinds.map(([kind]) => kind).join(" "),
      sentence: kinds.length ? "runners waiting to be created: " +
        kinds.map(([kind, words]) => counts[kind] + " " + words).join(", ") : "",
    };
  }

  function renderPools(pools) {
    const rows = [];
    for (const pool of pools) {
      const live = pool.busy + pool.idle + pool.booting;
      const waiting = waitingOf(pool);
      const health = pool.healthy
        ? el("span", { class: "healthy" }, "healthy")
        : el("span", { class: "unhealthy" }, "failing: " + (pool.last_error || "see the log"));
      const runners = el("td", {}, live + " of " + pool.max_runners,
        bar([["busy", pool.busy], ["idle", pool.idle], ["booting", pool.booting - waiting.count],
          ["waiting", waiting.count]], pool.max_runners));
      // A pool an operator drained (`runnerscale pools drain`): how far it is, by its name.
      const name = pool.drain
        ? el("td", {}, pool.name, " ", el("span", { class: "drained", "data-drain": pool.drain.state }, pool.drain.state))
        : el("td", {}, pool.name);
      const cells = [name, el("td", {}, health), runners];
      for (const field of ["busy", "idle", "booting", "waiting", "queued", "desired", "min_idle", "max_runners"]) {
        cells.push(field === "waiting"
          ? el("td", { class: "n", "data-field": field, "data-waiting-for": waiting.kinds, title: waiting.sentence }, waiting.count)
          : el("td", { class: "n", "data-field": field }, pool[field]));
      }
      rows.push(el("tr", { "data-pool": pool.name }, ...cells));
      const reason = el("td", { colspan: 11 }, pool.reason || "");
      if (waiting.sentence) reason.append(el("span", { class: "waiting" }, waiting.sentence));
      rows.push(el("tr", { class: "reason" }, reason));
    }
    document.querySelector("#pools tbody").replaceChildren(...rows);
  }

  // The hosts of each pool over several hosts, as `runnerscale status` lists them: up with
  // their runners and slots, or down for how long and why (a down node's slots do not count).
  function renderNodes(status) {
    const now = status.updated_at;
    const rows = [];
    for (const pool of status.pools || []) {
      for (const node of pool.nodes || []) {
        const plural = node.runners === 1 ? " runner" : " runners";
        const state = node.up
          ? el("span", { class: "healthy" }, "up")
          : el("span", { class: "unhealthy" },
            node.since === null || node.since === undefined ? "down" : "down for " + seconds(now - node.since));
        const runners = node.up
          ? el("td", {}, node.runners + plural + " on " + node.slots + " slots",
            bar([["held", node.runners]], node.slots))
          : el("td", {}, node.runners + plural);
        rows.push(el("tr", { "data-pool": pool.name, "data-node": node.name, "data-up": String(node.up) },
          el("td", {}, pool.name), el("td", {}, node.name), el("td", {}, node.labels.join(", ")),
          el("td", {}, state), runners, el("td", {}, node.up ? "" : node.reason || "no reason given")));
      }
    }
    const section = document.getElementById("nodes");
    section.hidden = rows.length === 0;
    section.querySelector("tbody").replaceChildren(...rows);
  }

  function dollars(value) {
    return "$" + Number(value || 0).toFixed(2);
  }

  // What each pool with a price or a budget spent, as `runnerscale status` lists it: today
  // (UTC) against its budget, in all, and whether the budget (or the failure backoff) holds
  // its launches back.
  function renderSpend(pools) {
    const rows = [];
    for (const pool of pools) {
      const budget = pool.budget_per_day;
      const hasBudget = budget !== null && budget !== undefined;
      if (!hasBudget && !pool.cost_total) continue;
      const spent = pool.spend_today || 0;
      const over = hasBudget && spent >= budget;
      const today = el("td", {}, dollars(spent) + (hasBudget ? " of " + dollars(budget) : ""));
      if (hasBudget) today.append(bar([[over ? "spent over" : "spent", spent]], budget));
      const held = pool.held_back || 0;
      const by = { budget: "the budget, until the next day (UTC)", failure_backoff: "the failure backoff" }[pool.held_back_by];
      const launches = held && by
        ? el("span", { class: "unhealthy" }, held + (held === 1 ? " runner" : " runners") + " held back by " + by)
        : el("span", {}, over ? "none launched: the budget is spent" : "not held back");
      rows.push(el("tr", { "data-pool": pool.name, "data-held-back-by": pool.held_back_by || "" },
        el("td", {}, pool.name), today,
        el("td", { class: "n" }, hasBudget ? dollars(budget) : "no cap"),
        el("td", { class: "n" }, dollars(pool.cost_total)), el("td", {}, launches)));
    }
    const section = document.getElementById("spend");
    section.hidden = rows.length === 0;
    section.querySelector("tbody").replaceChildren(...rows);
  }

  // Each scale-set pool's scale set, as `runnerscale status` lists it: its name (and id once
  // the listener has found or created it), the jobs assigned to it, its listener's session.
  function renderScaleSets(pools) {
    const rows = [];
    for (const pool of pools) {
      const scaleSet = pool.scale_set;
      if (!scaleSet) continue;
      const named = scaleSet.name + (scaleSet.id === null || scaleSet.id === undefined ? "" : " (id " + scaleSet.id + ")");
      rows.push(el("tr", { "data-pool": pool.name, "data-session": scaleSet.session },
        el("td", {}, pool.name), el("td", {}, named),
        el("td", { class: "n" }, String(scaleSet.assigned_jobs)), el("td", {}, scaleSet.session),
        el("td", {}, scaleSet.last_error ? el("span", { class: "unhealthy" }, scaleSet.last_error) : "")));
    }
    const section = document.getElementById("scale-sets");
    section.hidden = rows.length === 0;
    section.querySelector("tbody").replaceChildren(...rows);
  }

  // The runners whose instance drains (a spot interruption notice, say): they take no new job.
  function renderDraining(pools) {
    const rows = [];
    for (const pool of pools) {
      for (const runner of pool.draining || []) {
        rows.push(el("tr", { "data-pool": pool.name, "data-runner": runner.name, "data-state": runner.state },
          el("td", {}, pool.name), el("td", {}, runner.name), el("td", {}, runner.reason),
          el("td", {}, runner.state === "busy"
            ? "it finishes its job and takes no other" : runner.state + ", being removed")));
      }
    }
    const section = document.getElementById("draining");
    section.hidden = rows.length === 0;
    section.querySelector("tbody").replaceChildren(...rows);
  }

  function renderJobs(status) {
    const now = status.updated_at;
    const queued = document.getElementById("queued");
    const waiting = (status.jobs && status.jobs.queued || 0) - (status.unmatched_jobs || 0);
    queued.querySelector(".count").textContent = waiting > 0 ? "(" + waiting + ")" : "";
    showTable(queued, (status.queued || []).map((job) => el("tr", { "data-job": job.id },
      el("td", {}, job.id), el("td", {}, job.repo), el("td", {}, job.labels.join(", ")),
      el("td", {}, job.pool), el("td", { class: "n" }, seconds(now - job.created_at)))));

    const unmatched = document.getElementById("unmatched");
    unmatched.querySelector(".count").textContent = status.unmatched_jobs ? "(" + status.unmatched_jobs + ")" : "";
    showTable(unmatched, (status.unmatched || []).map((job) => el("tr", { "data-job": job.id },
      el("td", {}, job.id), el("td", {}, job.repo), el("td", {}, job.labels.join(", ")),
      el("td", {}, job.reason))));

    const lost = document.getElementById("lost");
    const losses = status.lost_jobs || [];
    lost.hidden = losses.length === 0;
    lost.querySelector("tbody").replaceChildren(...losses.map((loss) => el("tr", {},
      el("td", {}, loss.job_id), el("td", {}, loss.repo), el("td", {}, loss.pool),
      el("td", {}, loss.reason), el("td", {}, loss.outcome || "not settled yet"))));
  }

  function niceCeiling(value) {
    if (value <= 1) return 1;
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    for (const factor of [1, 2, 5, 10]) if (factor * step >= value) return factor * step;
    return 10 * step;
  }

  // Each job started lately, at its start (x) and how long it waited (y), coloured by pool.
  function renderWaits(status) {
    const waits = status.queue_waits || [];
    const box = document.getElementById("wait-plot-box");
    const summary = document.getElementById("wait-summary");
    const colour = colourOf(status.pools || []);
    const width = 760, height = 240, left = 52, right = 16, top = 12, bottom = 30;
    const plot = svg("svg", { id: "wait-plot", viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": "queue wait of each job started lately", "data-points": waits.length });
    const sorted = waits.map((wait) => wait.wait).sort((a, b) => a - b);
    if (waits.length === 0) {
      summary.textContent = "No job has started since the daemon started.";
    } else {
      const middle = Math.floor(sorted.length / 2);
      const median = sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
      summary.textContent = (waits.length === 1 ? "The last job" : "The last " + waits.length + " jobs") + " started: median wait " + seconds(median) +
        ", longest " + seconds(sorted[sorted.length - 1]) + ".";
    }
    const yMax = niceCeiling(sorted.length ? sorted[sorted.length - 1] : 1);
    const end = Math.max(status.updated_at, ...waits.map((wait) => wait.started_at));
    const start = Math.min(end - 60, ...waits.map((wait) => wait.started_at));
    const x = (time) => left + ((time - start) / (end - start)) * (width - left - right);
    const y = (value) => height - bottom - (value / yMax) * (height - top - bottom);
    for (const fraction of [0, 0.5, 1]) {
      const value = yMax * fraction;
      plot.append(svg("line", { class: fraction ? "grid" : "axis", x1: left, x2: width - right, y1: y(value), y2: y(value) }));
      const label = value < 10 && !Number.isInteger(value) ? value.toFixed(1) + "s" : seconds(value);
      plot.append(svg("text", { x: left - 6, y: y(value) + 4, "text-anchor": "end" }, label));
    }
    plot.append(svg("line", { class: "axis", x1: left, x2: left, y1: top, y2: height - bottom }));
    plot.append(svg("text", { x: left, y: height - 8 }, clock(start)));
    plot.append(svg("text", { x: width - right, y: height - 8, "text-anchor": "end" }, clock(end)));
    for (const wait of waits) {
      const point = svg("circle", { class: "wait", cx: x(wait.started_at), cy: y(wait.wait), r: 4.5,
        fill: colour(wait.pool), "data-job": wait.id });
      point.append(svg("title", {}, "job " + wait.id + " of " + wait.repo + " on " + wait.pool +
        ": waited " + seconds(wait.wait) + ", started " + clock(wait.started_at)));
      plot.append(point);
    }
    const legend = el("div", { class: "legend" });
    for (const pool of status.pools || []) {
      const dot = el("i");
      dot.style.background = colour(pool.name);
      legend.append(el("span", {}, dot, pool.name));
    }
    box.replaceChildren(plot, legend);
  }

  function renderBudget(status) {
    const github = status.github;
    const summary = document.getElementById("budget-summary");
    const rows = [];
    if (!github) {
      summary.textContent = "Not reported by this daemon.";
    } else {
      const paused = Object.entries(github.paused || {}).filter(([, until]) => until > status.updated_at);
      summary.textContent = github.calls + " calls since the start (" + github.not_modified +
        " answered 'not modified', free); polling every " + seconds(github.poll_interval) +
        (github.poll_stretched ? ", stretched to save the budget" : "") +
        (paused.length ? "; paused: " + paused.map(([name, until]) =>
          name + " for " + seconds(until - status.updated_at)).join(", ") : "") + ".";
      for (const [name, bucket] of Object.entries(github.rate_limit || {})) {
        const remaining = el("td", {}, bucket.remaining + " (" + Math.round((100 * bucket.remaining) / Math.max(1, bucket.limit)) + "%)",
          bar([[bucket.remaining < bucket.limit / 10 ? "remaining low" : "remaining", bucket.remaining]], bucket.limit));
        rows.push(el("tr", { "data-resource": name }, el("td", {}, name), remaining,
          el("td", { class: "n" }, bucket.used), el("td", { class: "n" }, bucket.limit),
          el("td", { class: "n" }, seconds(bucket.reset - status.updated_at))));
      }
    }
    document.querySelector("#budget tbody").replaceChildren(...rows);
  }

  function renderErrors(status) {
    const errors = Object.entries(status.errors || {});
    const section = document.getElementById("loop-errors");
    section.hidden = errors.length === 0;
    section.querySelector("ul").replaceChildren(...errors.map(([loop, count]) =>
      el("li", {}, loop + ": " + count + " failed cycles (the daemon's log says why)")));
  }

  function render(status) {
    renderLeadership(status);
    renderPools(status.pools || []);
    renderNodes(status);
    renderSpend(status.pools || []);
    renderDraining(status.pools || []);
    renderScaleSets(status.pools || []);
    renderWaits(status);
    renderJobs(status);
    renderBudget(status);
    renderErrors(status);
    const body = document.body;
    body.dataset.refreshes = String(Number(body.dataset.refreshes) + 1);
    const freshness = document.getElementById("freshness");
    freshness.textContent = "status of " + clock(status.updated_at) + ", read every " + EVERY_MS / 1000 + "s";
    freshness.classList.remove("stale");
  }

  function problem(message) {
    const banner = document.getElementById("problem");
    banner.hidden = message === null;
    banner.textContent = message || "";
    if (message !== null) document.getElementById("freshness").classList.add("stale");
  }

  async function refresh() {
    const key = sessionStorage.getItem(KEY);
    let answer;
    try {
      answer = await fetch("api/v1/status", {
        headers: key ? { Authorization: "Bearer " + key } : {},
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      problem("Cannot reach runnerscale dashboard (has it stopped?): " + error.message);
      return true;
    }
    let body = null;
    try { body = await answer.json(); } catch (error) { body = null; }
    if (answer.ok && body) {
      problem(null);
      render(body);
      return true;
    }
    problem((body && body.message) || "The status could not be read (HTTP " + answer.status + ").");
    return answer.status !== 401;  // without the key, asking again changes nothing
  }

  async function loop() {
    if (await refresh()) setTimeout(loop, EVERY_MS);
  }
  loop();
})();
