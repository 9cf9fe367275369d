// The views. Each reads what it shows in one GraphQL request at the page's as-of point, and
// says which event types make it stale (the shell re-reads it then, at most once a second).
// Lists are paged on the server: a view never asks for more than one page.

import { gql } from "./gql.js";
import {
  h, s, fill, fmtNum, fmtMem, fmtPorts, portCount, fmtTime, relTime, fmtDuration,
  scheduleWords, brief, badge, meter,
} from "./util.js";

const PAGE = 100;

/** [view, label, access key] in the navigation. */
export const NAV = [
  ["cluster", "Cluster", "c"],
  ["apps", "Apps", "a"],
  ["jobs", "Jobs", "j"],
  ["deployments", "Deployments", "d"],
  ["events", "Events", "e"],
  ["audit", "Audit", "u"],
];

const RES = "cpus mem disk ports { begin end }";

function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows)));
}

function section(title, ...body) {
  return h("section", { class: "panel" }, h("h2", {}, title), ...body);
}

function header(title, subtitle, actions) {
  return h("header", { class: "page-head" },
    h("div", {}, h("h1", {}, title), subtitle ? h("p", { class: "muted" }, subtitle) : null),
    actions && actions.length ? h("div", { class: "actions" }, actions) : null);
}

/** Actions show only on the live state (the past is read-only), and only to a caller whose
 * token may change things. */
function actions(ctx, ...buttons) {
  return ctx.live && ctx.operate ? buttons : [];
}

function button(label, onclick, cls) {
  return h("button", { type: "button", class: cls, onclick }, label);
}

/** Next/previous page links over a forward-only connection: `after` and the cursors before
 * it (`trail`) live in the URL, with the view's other parameters (its filters). */
function pager(ctx, view, conn, what) {
  const keep = {};
  for (const [k, v] of ctx.params) if (!["at", "after", "trail"].includes(k)) keep[k] = v;
  const after = ctx.params.get("after");
  const trail = (ctx.params.get("trail") || "").split(",").filter(Boolean);
  const prev = after ? ctx.link(view, "", { ...keep, after: trail[trail.length - 1] || "", trail: trail.slice(0, -1).join(",") }) : null;
  const next = conn.pageInfo.hasNextPage
    ? ctx.link(view, "", { ...keep, after: conn.pageInfo.endCursor, trail: after ? [...trail, after].join(",") : "" }) : null;
  return h("nav", { class: "pager", "aria-label": `${what} pages` },
    h("span", { class: "muted" }, `${conn.totalCount} ${what}`),
    prev ? h("a", { href: prev, rel: "prev" }, "← Previous") : null,
    next ? h("a", { href: next, rel: "next" }, "Next →") : null);
}

// ---------------------------------------------------------------- cluster

const cluster = {
  title: () => "Cluster",
  relevant: (type) => /^(Agent|Framework|Offer|Master|Leader|Task(Launched|StatusUpdated))/.test(type),
  async render(ctx) {
    const d = await gql(`query($asOf: AsOf) { cluster(asOf: $asOf) {
      leader { nodeId term address since } masters { nodeId address joinedAt }
      total { ${RES} } used { ${RES} } offered { ${RES} }
      agents { id hostname address status version registeredAt attributes { key value }
        total { ${RES} } used { ${RES} } offered { ${RES} } }
      frameworks { id name user roles status failoverTimeoutSecs registeredAt suppressedRoles }
      offers { id frameworkId agentId madeAt resources { ${RES} } } } }`, { asOf: ctx.asOf });
    const c = d.cluster;
    const sum = (k, fmt) => meter(c.used[k], c.offered[k], c.total[k], `${fmt(c.used[k])} used, ${fmt(c.offered[k])} offered of ${fmt(c.total[k])}`);
    const shown = c.agents.slice(0, 500);
    return h("div", {},
      header("Cluster", c.leader ? `Leader: master ${c.leader.nodeId} at ${c.leader.address}, term ${c.leader.term}, since ${fmtTime(c.leader.since)}` : "No leader known at this point"),
      h("div", { class: "cards" },
        h("div", { class: "card" }, h("h3", {}, "CPUs"), sum("cpus", (x) => fmtNum(x, 2))),
        h("div", { class: "card" }, h("h3", {}, "Memory"), sum("mem", fmtMem)),
        h("div", { class: "card" }, h("h3", {}, "Disk"), sum("disk", fmtMem)),
        h("div", { class: "card" }, h("h3", {}, "Agents"), h("p", { class: "big" }, String(c.agents.filter((a) => a.status === "ACTIVE").length)), h("p", { class: "muted" }, `active of ${c.agents.length}`))),
      // A single master (`cairn dev`) never logs a join: it is the leader alone.
      section("Masters", table(["Node", "Address", "Joined", "Role"], (c.masters.length || !c.leader ? c.masters
        : [{ nodeId: c.leader.nodeId, address: c.leader.address, joinedAt: c.leader.since }]).map((m) => h("tr", {},
        h("td", {}, String(m.nodeId)), h("td", {}, m.address), h("td", {}, fmtTime(m.joinedAt)),
        h("td", {}, c.leader && c.leader.nodeId === m.nodeId ? badge("leader", "ok") : "follower"))), "No masters recorded.")),
      section(`Agents (${c.agents.length})`,
        table(["Hostname", "Status", "CPUs", "Memory", "Disk", "Ports", "Attributes", "Version"], shown.map((a) => h("tr", {},
          h("td", {}, h("span", { title: `${a.id} at ${a.address}` }, a.hostname)),
          h("td", {}, badge(a.status)),
          h("td", { class: "w" }, meter(a.used.cpus, a.offered.cpus, a.total.cpus, `${fmtNum(a.used.cpus, 2)} / ${fmtNum(a.total.cpus, 2)}`)),
          h("td", { class: "w" }, meter(a.used.mem, a.offered.mem, a.total.mem, `${fmtMem(a.used.mem)} / ${fmtMem(a.total.mem)}`)),
          h("td", { class: "w" }, meter(a.used.disk, a.offered.disk, a.total.disk, `${fmtMem(a.used.disk)} / ${fmtMem(a.total.disk)}`)),
          h("td", { title: `used ${fmtPorts(a.used.ports)}; total ${fmtPorts(a.total.ports)}` }, `${portCount(a.used.ports)} / ${portCount(a.total.ports)}`),
          h("td", {}, a.attributes.map((x) => `${x.key}=${x.value}`).join(", ") || "–"),
          h("td", {}, a.version))), "No agents have registered. Start one with `cairn agent --master 127.0.0.1:5050`."),
        c.agents.length > shown.length ? h("p", { class: "muted" }, `Showing the first ${shown.length} agents.`) : null),
      section(`Frameworks (${c.frameworks.length})`, table(["Name", "Id", "Status", "Roles", "User", "Failover timeout", "Registered"], c.frameworks.map((f) => h("tr", {},
        h("td", {}, f.name), h("td", { class: "mono" }, f.id), h("td", {}, badge(f.status)),
        h("td", {}, f.roles.join(", ") + (f.suppressedRoles.length ? ` (suppressed: ${f.suppressedRoles.join(", ")})` : "")),
        h("td", {}, f.user), h("td", {}, `${f.failoverTimeoutSecs} s`), h("td", {}, fmtTime(f.registeredAt)))), "No frameworks.")),
      section(`Outstanding offers (${c.offers.length})`, table(["Offer", "Framework", "Agent", "CPUs", "Memory", "Disk", "Ports", "Made"], c.offers.slice(0, 200).map((o) => h("tr", {},
        h("td", { class: "mono" }, o.id), h("td", { class: "mono" }, o.frameworkId), h("td", { class: "mono" }, o.agentId),
        h("td", {}, fmtNum(o.resources.cpus, 2)), h("td", {}, fmtMem(o.resources.mem)), h("td", {}, fmtMem(o.resources.disk)),
        h("td", {}, fmtPorts(o.resources.ports)), h("td", {}, fmtTime(o.madeAt)))), "No offers outstanding.")));
  },
};

// ---------------------------------------------------------------- apps

const WAITING = "waiting { instancesToLaunch backoffUntil heldByDeployment unplaceable }";

function appStatus(a) {
  if (a.deployments.length) return badge("deploying", "warn");
  if (a.instances === 0) return badge("suspended", "idle");
  if (a.waiting) return badge("waiting", "bad");
  if (a.tasksUnhealthy) return badge("unhealthy", "bad");
  return badge("running", "ok");
}

/** "Why isn't it running?" in words. */
function whyWaiting(w) {
  if (!w) return [];
  const out = [`${w.instancesToLaunch} instance(s) to launch`];
  if (w.backoffUntil) out.push(`backing off after failures until ${fmtTime(w.backoffUntil)}`);
  if (w.heldByDeployment) out.push(`held by deployment ${w.heldByDeployment} until the apps it depends on are deployed`);
  if (w.unplaceable.length) out.push(...w.unplaceable.map((u) => `no agent fits: ${u}`));
  else if (!w.backoffUntil && !w.heldByDeployment) out.push("waiting for an offer");
  return out;
}

function appForm(ctx, initial, update) {
  ctx.edit(update ? `Update ${initial.id}` : "New app", initial,
    async (json) => (await gql(`query($d: JSON!) { validateApp(definition: $d) { details { path errors } } }`, { d: json })).validateApp.details,
    (json) => gql(update ? `mutation($d: JSON!) { updateApp(definition: $d) { deploymentId } }`
      : `mutation($d: JSON!) { applyApps(definition: $d) { deploymentId } }`, { d: json }));
}

const SAMPLE_APP = { id: "/hello", cmd: "while true; do echo hello; sleep 5; done", cpus: 0.1, mem: 32, instances: 1 };

const apps = {
  title: () => "Apps",
  relevant: (type) => /^(App|Task(Launched|StatusUpdated)|Deployment)/.test(type),
  async render(ctx) {
    const d = await gql(`query($asOf: AsOf, $first: Int, $after: String) { apps(asOf: $asOf, first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor }
      nodes { id instances version tasksRunning tasksStaged tasksHealthy tasksUnhealthy queued ${WAITING}
        deployments { id } lastTaskFailure { state at message } } } }`,
    { asOf: ctx.asOf, first: PAGE, after: ctx.params.get("after") || null });
    const conn = d.apps;
    const rows = conn.nodes.map((a) => h("tr", {},
      h("td", {}, h("a", { href: ctx.link("app", a.id) }, a.id)),
      h("td", {}, appStatus(a)),
      h("td", { class: "num" }, `${a.tasksRunning} / ${a.instances}`),
      h("td", { class: "num" }, a.tasksHealthy || a.tasksUnhealthy ? `${a.tasksHealthy} ✓ ${a.tasksUnhealthy ? `${a.tasksUnhealthy} ✗` : ""}` : "–"),
      h("td", { class: "num" }, String(a.tasksStaged)),
      h("td", { class: "num" }, String(a.queued)),
      h("td", { class: "why" }, whyWaiting(a.waiting).join("; ") || (a.lastTaskFailure ? `last failure: ${a.lastTaskFailure.state} ${relTime(a.lastTaskFailure.at)}` : "")),
      h("td", {}, fmtTime(a.version))));
    return h("div", {},
      header("Apps", "Long-running services: instances, health and deployments.",
        actions(ctx, button("New app", () => appForm(ctx, SAMPLE_APP, false), "primary"))),
      section("", table(["Id", "Status", "Running", "Health", "Staged", "Queued", "Why isn't it running?", "Version"], rows,
        "No apps. Create one with “New app”, `cairn app apply -f app.json` or POST /v2/apps."), pager(ctx, "apps", conn, "apps")));
  },
};

// ---------------------------------------------------------------- an app

/** A task's stdout or stderr: the tail, and on request new output as it is written. */
const output = (() => {
  const pre = h("pre", { class: "output", tabindex: 0, "aria-label": "Task output" });
  const title = h("h2", {}, "Output");
  const follow = h("input", { type: "checkbox", id: "follow" });
  const stream = h("select", { "aria-label": "Stream" }, h("option", { value: "STDOUT" }, "stdout"), h("option", { value: "STDERR" }, "stderr"));
  const panel = h("section", { class: "panel", hidden: true }, title,
    h("div", { class: "row" }, stream, h("label", { for: "follow" }, follow, " follow")), pre);
  let task = null;
  let end = 0;
  let timer = null;
  const q = `query($id: String!, $stream: Stream!, $offset: Int, $tail: Int) { task(id: $id) { output(stream: $stream, offset: $offset, tail: $tail) { data end } } }`;
  async function read(offset) {
    try {
      const d = await gql(q, { id: task, stream: stream.value, offset, tail: offset === null ? 16384 : null });
      const out = d.task && d.task.output;
      if (!out) return;
      if (offset === null) pre.textContent = out.data || "(nothing written yet)";
      else if (out.data) pre.textContent += out.data;
      end = out.end;
      pre.scrollTop = pre.scrollHeight;
    } catch (e) {
      pre.textContent = `Cannot read the output: ${e.message}`;
    }
  }
  const poll = () => {
    clearTimeout(timer);
    // The agent's files have no push stream: while "follow" is ticked, read on every 2 s.
    if (follow.checked && task && document.body.contains(panel)) timer = setTimeout(async () => { await read(end); poll(); }, 2000);
  };
  follow.addEventListener("change", poll);
  stream.addEventListener("change", () => task && read(null));
  return {
    panel,
    show(id) {
      task = id;
      panel.hidden = false;
      fill(title, `Output of ${id}`);
      read(null).then(poll);
    },
    forApp(tasks) {
      if (task && !tasks.some((t) => t.id === task) && !document.body.contains(panel)) {
        task = null;
        panel.hidden = true;
      }
      return panel;
    },
  };
})();

function statuses(t) {
  return h("details", { "data-key": `task:${t.id}` }, h("summary", {}, `${t.statuses.length} states`),
    h("ol", { class: "history" }, t.statuses.map((x) => h("li", {},
      `${fmtTime(x.at)} `, badge(x.state), ` ${x.source}`, x.reason ? ` · ${x.reason}` : "", x.message ? ` · ${x.message}` : "",
      x.healthy === null ? "" : x.healthy ? " · healthy" : " · unhealthy"))));
}

function diffTable(changes) {
  return table(["Path", "Before", "After"], changes.map((c) => h("tr", {},
    h("td", { class: "mono" }, c.path), h("td", { class: "before" }, brief(c.before)), h("td", { class: "after" }, brief(c.after)))), "No differences.");
}

function deploymentRow(ctx, dep) {
  const steps = Array.isArray(dep.steps) ? dep.steps : [];
  return h("div", { class: "deployment" },
    h("div", { class: "row" }, badge(dep.status), h("span", { class: "mono" }, dep.id),
      h("span", {}, `step ${dep.completedSteps} of ${dep.totalSteps}`), h("span", { class: "muted" }, `started ${fmtTime(dep.startedAt)}`),
      dep.appIds ? h("span", {}, dep.appIds.join(", ")) : null,
      dep.status === "RUNNING" ? actions(ctx,
        button("Cancel and roll back", () => ctx.act("Cancel deployment", `Stop ${dep.id} and put its apps back to their earlier definitions?`,
          `mutation($id: String!) { cancelDeployment(id: $id, rollback: true) { deploymentId } }`, { id: dep.id })),
        button("Cancel, keep as is", () => ctx.act("Cancel deployment", `Stop ${dep.id} where it is, without a rollback?`,
          `mutation($id: String!) { cancelDeployment(id: $id, rollback: false) { deploymentId } }`, { id: dep.id }))) : null),
    dep.reason ? h("p", { class: "muted" }, dep.reason) : null,
    h("ol", { class: "steps" }, steps.map((step, i) => h("li", { class: i < dep.completedSteps ? "done" : i === dep.completedSteps && dep.status === "RUNNING" ? "now" : "" },
      (step.actions || []).map((a) => `${a.action} ${a.app}`).join(", ") || brief(step)))));
}

const app = {
  title: (ctx) => ctx.arg,
  nav: "apps",
  relevant: (type) => /^(App|Task(Launched|StatusUpdated|KillRequested)|Deployment)/.test(type),
  async render(ctx) {
    const d = await gql(`query($id: String!, $asOf: AsOf) {
      app(id: $id, asOf: $asOf) { id instances version createdAt definition tasksRunning tasksStaged tasksHealthy tasksUnhealthy queued
        ${WAITING} lastTaskFailure { taskId state message at } backoff { failures until }
        deployments { id version appIds status steps totalSteps completedSteps startedAt reason }
        versions { version offset change } }
      tasks(app: $id, asOf: $asOf, first: ${PAGE}) { totalCount nodes { id state healthy agentId agent { hostname } ports version launchedAt
        statuses { at state source reason message healthy } } } }`, { id: ctx.arg, asOf: ctx.asOf });
    const a = d.app;
    if (!a) return h("div", {}, header(ctx.arg), h("p", { class: "empty" }, "No such app at this point in time."));
    const versions = [...a.versions].reverse();
    const base = ctx.params.get("compare");
    const older = versions.find((v) => String(v.offset) === base) || versions[1];
    let diff = null;
    if (older) {
      const dd = await gql(`query($id: String!, $from: AsOf!, $to: AsOf!) { diff(app: $id, from: $from, to: $to) { changes { path before after } } }`,
        { id: a.id, from: { offset: older.offset }, to: { offset: versions[0].offset } });
      diff = dd.diff.changes.filter((c) => c.path.startsWith("/spec"));
    }
    const tasks = d.tasks.nodes;
    const why = whyWaiting(a.waiting);
    return h("div", {},
      header(a.id, `version ${fmtTime(a.version)} · created ${fmtTime(a.createdAt)}`, actions(ctx,
        button("Scale", () => ctx.act("Scale", `How many instances of ${a.id}?`, `mutation($id: String!, $n: Int!) { scaleApp(id: $id, instances: $n) { deploymentId } }`, { id: a.id },
          [{ name: "n", label: "Instances", type: "number", value: a.instances, min: 0 }]), "primary"),
        button("Restart", () => ctx.act("Restart", `Replace every instance of ${a.id}, honouring its upgrade strategy?`, `mutation($id: String!) { restartApp(id: $id) { deploymentId } }`, { id: a.id })),
        button("Edit", () => appForm(ctx, a.definition, true)),
        button("Delete", () => ctx.act("Delete", `Delete ${a.id} and kill its instances? Its history stays in the log.`, `mutation($id: String!) { deleteApp(id: $id) { deploymentId } }`, { id: a.id }).then((r) => r && ctx.go(ctx.link("apps"))), "danger"))),
      h("div", { class: "cards" },
        h("div", { class: "card" }, h("h3", {}, "Instances"), h("p", { class: "big" }, `${a.tasksRunning} / ${a.instances}`), h("p", { class: "muted" }, `running of wanted · ${a.tasksStaged} staged · ${a.queued} queued`)),
        h("div", { class: "card" }, h("h3", {}, "Health"), h("p", { class: "big" }, `${a.tasksHealthy} ✓ ${a.tasksUnhealthy} ✗`), h("p", { class: "muted" }, "healthy · unhealthy")),
        h("div", { class: "card" }, h("h3", {}, "Backoff"), h("p", { class: "big" }, a.backoff ? String(a.backoff.failures) : "0"), h("p", { class: "muted" }, a.backoff ? `failures; launches wait until ${fmtTime(a.backoff.until)}` : "no failures counted"),
          a.backoff ? actions(ctx, button("Reset delay", () => ctx.act("Reset delay", `Launch ${a.id}'s waiting instances at the next offers, without waiting out the delay?`, `mutation($id: String!) { resetAppDelay(id: $id) }`, { id: a.id }))) : null)),
      why.length || a.lastTaskFailure ? section("Why isn't it running?",
        why.length ? h("ul", { class: "why" }, why.map((w) => h("li", {}, w))) : h("p", {}, "It runs every instance it should."),
        a.lastTaskFailure ? h("p", {}, "Last task failure: ", badge(a.lastTaskFailure.state), ` ${a.lastTaskFailure.taskId} ${fmtTime(a.lastTaskFailure.at)} ${a.lastTaskFailure.message || ""}`) : null) : null,
      a.deployments.length ? section("Deployment", a.deployments.map((dep) => deploymentRow(ctx, dep))) : null,
      section(`Tasks (${d.tasks.totalCount})`, table(["Task", "State", "Agent", "Host ports", "Version", "Launched", "History", ""], tasks.map((t) => h("tr", {},
        h("td", { class: "mono" }, t.id), h("td", {}, badge(t.state), t.healthy === null ? "" : t.healthy ? " ✓" : " ✗"),
        h("td", {}, t.agent ? t.agent.hostname : t.agentId), h("td", {}, t.ports.join(", ") || "–"),
        h("td", {}, fmtTime(t.version)), h("td", {}, fmtTime(t.launchedAt)), h("td", {}, statuses(t)),
        h("td", { class: "row" }, button("Output", () => output.show(t.id)),
          actions(ctx, button("Kill", () => ctx.act("Kill task", `Kill ${t.id}? The app replaces it.`, `mutation($id: String!) { killTask(id: $id) { offset } }`, { id: t.id }), "danger"))))),
      "No tasks run.")),
      output.forApp(tasks),
      section("Versions",
        table(["Version", "Change", "Offset", "Compare", ""], versions.map((v, i) => h("tr", {},
          h("td", {}, fmtTime(v.version)), h("td", {}, v.change), h("td", { class: "num" }, String(v.offset)),
          h("td", {}, i === 0 ? "current" : h("a", { href: ctx.link("app", a.id, { compare: v.offset }), "aria-current": older === v ? "true" : "false" }, older === v ? "compared ✓" : "compare")),
          h("td", {}, i === 0 ? null : actions(ctx, button("Roll back", () => ctx.act("Roll back", `Put ${a.id} back to its definition of ${fmtTime(v.version)} (as a new version)?`,
            `mutation($id: String!, $v: String!) { rollbackApp(id: $id, version: $v) { deploymentId } }`, { id: a.id, v: v.version })))))), "No versions."),
        older ? h("div", {}, h("h3", {}, `What changed from ${fmtTime(older.version)} to the current version`), diffTable(diff)) : null),
      section("Definition", h("pre", { class: "json" }, JSON.stringify(a.definition, null, 2))));
  },
};

// ---------------------------------------------------------------- jobs

function jobForm(ctx, initial, update) {
  // No dry run for jobs: the fields are checked when applied, and errors shown then.
  ctx.edit(update ? `Update ${initial.name}` : "New job", initial, null,
    (json) => gql(`mutation($d: JSON!) { applyJob(definition: $d) }`, { d: json }));
}

const SAMPLE_JOB = { name: "hello-job", command: "echo hello", schedule: "R/2026-01-01T00:00:00Z/PT1H", epsilon: "PT5M", cpus: 0.1, mem: 32, owner: "you@example.com" };

function outcome(run) {
  if (!run) return "–";
  return badge(run.outcome || "running", run.outcome ? undefined : "warn");
}

const jobs = {
  title: () => "Jobs",
  relevant: (type) => /^(Job|Task(Launched|StatusUpdated))/.test(type),
  async render(ctx) {
    const d = await gql(`query($asOf: AsOf, $first: Int, $after: String) { jobs(asOf: $asOf, first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor }
      nodes { name schedule scheduleTimeZone disabled nextDue(count: 1) successCount errorCount lastSuccess lastError
        lastRun { outcome finishedAt } activeRuns { id } parents } } }`,
    { asOf: ctx.asOf, first: PAGE, after: ctx.params.get("after") || null });
    const conn = d.jobs;
    const rows = conn.nodes.map((j) => h("tr", {},
      h("td", {}, h("a", { href: ctx.link("job", j.name) }, j.name)),
      h("td", {}, j.disabled ? badge("disabled", "idle") : j.activeRuns.length ? badge("running", "warn") : badge("idle", "idle")),
      h("td", {}, j.parents.length ? `after ${j.parents.join(", ")}` : scheduleWords(j.schedule, j.scheduleTimeZone)),
      h("td", {}, j.nextDue.length ? `${fmtTime(j.nextDue[0])} (${relTime(j.nextDue[0])})` : "–"),
      h("td", {}, outcome(j.lastRun)),
      h("td", { class: "num" }, String(j.successCount)), h("td", { class: "num" }, String(j.errorCount))));
    return h("div", {},
      header("Jobs", "Scheduled and dependent jobs: when they run next and how they ended.",
        actions(ctx, button("New job", () => jobForm(ctx, SAMPLE_JOB, false), "primary"))),
      section("", table(["Name", "State", "Schedule", "Next due", "Last outcome", "Successes", "Errors"], rows,
        "No jobs. Create one with “New job”, `cairn job apply -f job.json` or POST /scheduler/iso8601."), pager(ctx, "jobs", conn, "jobs")));
  },
};

// ---------------------------------------------------------------- a job

function runSeconds(run) {
  const start = run.attempts.find((x) => x.startedAt);
  if (!start || !run.finishedAt) return null;
  return (Date.parse(run.finishedAt) - Date.parse(start.startedAt)) / 1000;
}

/** Run durations as bars, oldest left, coloured by outcome. */
function durationChart(runs) {
  const done = runs.filter((r) => runSeconds(r) !== null).reverse();
  if (!done.length) return h("p", { class: "empty" }, "No finished runs to chart yet.");
  const max = Math.max(...done.map(runSeconds), 0.001);
  const width = 640, height = 140, bw = width / Math.max(done.length, 20);
  return h("figure", { class: "chart" },
    s("svg", { viewBox: `0 0 ${width} ${height + 16}`, role: "img", "aria-label": "Run durations" },
      done.map((r, i) => {
        const bh = Math.max(2, (runSeconds(r) / max) * height);
        return s("rect", { x: i * bw + 1, y: height - bh, width: Math.max(1, bw - 2), height: bh, class: `bar ${r.outcome || "running"}` },
          s("title", {}, `${fmtTime(r.scheduledFor)}: ${fmtDuration(runSeconds(r))}, ${r.outcome}`));
      }),
      s("text", { x: 0, y: height + 14, class: "axis" }, `longest ${fmtDuration(max)}`)),
    h("figcaption", { class: "muted" }, "Run durations, oldest first (green succeeded, red failed, grey killed)."));
}

/** The dependency graph around a job, drawn in layers from its oldest ancestors. */
function graph(ctx, name, edges) {
  const parents = new Map(), children = new Map();
  for (const e of edges) {
    if (!parents.has(e.child)) parents.set(e.child, []);
    parents.get(e.child).push(e.parent);
    if (!children.has(e.parent)) children.set(e.parent, []);
    children.get(e.parent).push(e.child);
  }
  const near = new Set([name]);
  const walk = (from, map) => {
    const todo = [from];
    while (todo.length && near.size < 60) {
      for (const n of map.get(todo.pop()) || []) if (!near.has(n)) { near.add(n); todo.push(n); }
    }
  };
  walk(name, parents);
  walk(name, children);
  if (near.size === 1) return h("p", { class: "empty" }, "No parents and no children.");
  const depth = new Map();
  const level = (n, seen = new Set()) => {
    if (depth.has(n)) return depth.get(n);
    if (seen.has(n)) return 0;
    seen.add(n);
    const ps = (parents.get(n) || []).filter((p) => near.has(p));
    const d = ps.length ? 1 + Math.max(...ps.map((p) => level(p, seen))) : 0;
    depth.set(n, d);
    return d;
  };
  const layers = [];
  for (const n of [...near].sort()) {
    const d = level(n);
    (layers[d] = layers[d] || []).push(n);
  }
  const W = 170, H = 34, GX = 40, GY = 18;
  const pos = new Map();
  layers.forEach((layer, x) => layer.forEach((n, y) => pos.set(n, { x: x * (W + GX) + 4, y: y * (H + GY) + 4 })));
  const width = layers.length * (W + GX), height = Math.max(...layers.map((l) => l.length)) * (H + GY);
  const lines = edges.filter((e) => pos.has(e.parent) && pos.has(e.child)).map((e) => {
    const a = pos.get(e.parent), b = pos.get(e.child);
    return s("path", { d: `M${a.x + W},${a.y + H / 2} C${a.x + W + GX / 2},${a.y + H / 2} ${b.x - GX / 2},${b.y + H / 2} ${b.x},${b.y + H / 2}`, class: "edge" });
  });
  const nodes = [...pos].map(([n, p]) => {
    const a = s("a", { href: ctx.link("job", n) },
      s("rect", { x: p.x, y: p.y, width: W, height: H, rx: 6, class: n === name ? "node me" : "node" }),
      s("text", { x: p.x + 8, y: p.y + H / 2 + 4 }, n.length > 22 ? `${n.slice(0, 21)}…` : n));
    return a;
  });
  return s("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": `Dependency graph of ${name}` },
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }))),
    lines, nodes);
}

const job = {
  title: (ctx) => ctx.arg,
  nav: "jobs",
  relevant: (type) => /^(Job|Task(Launched|StatusUpdated))/.test(type),
  async render(ctx) {
    const d = await gql(`query($name: String!, $asOf: AsOf) {
      job(name: $name, asOf: $asOf) { name definition schedule scheduleTimeZone disabled command owner epsilonSeconds retries concurrency
        nextDue(count: 5) parents children successCount errorCount lastSuccess lastError
        durations { count p50 p90 p99 max } missed { scheduledFor at reason }
        history(last: 60) { id scheduledFor cause triggeredAt outcome finishedAt message
          attempts { attempt taskId startedAt retryReason } task { id state agent { hostname } } } }
      jobGraph(asOf: $asOf) { edges { parent child } } }`, { name: ctx.arg, asOf: ctx.asOf });
    const j = d.job;
    if (!j) return h("div", {}, header(ctx.arg), h("p", { class: "empty" }, "No such job at this point in time."));
    const q = (m) => `mutation($n: String!) { ${m}(name: $n) }`;
    return h("div", {},
      header(j.name, `${j.parents.length ? `runs after ${j.parents.join(", ")} succeed` : scheduleWords(j.schedule, j.scheduleTimeZone)}${j.disabled ? " · disabled" : ""}`, actions(ctx,
        button("Run now", () => ctx.act("Run now", `Run ${j.name} now, whatever its schedule?`, q("runJob"), { n: j.name }), "primary"),
        button("Edit", () => jobForm(ctx, j.definition, true)),
        j.disabled ? button("Enable", () => ctx.act("Enable", `Start ${j.name}'s schedule again, from now?`, q("enableJob"), { n: j.name }))
          : button("Disable", () => ctx.act("Disable", `Stop ${j.name}'s scheduled and dependent runs?`, q("disableJob"), { n: j.name })),
        button("Kill runs", () => ctx.act("Kill runs", `Kill ${j.name}'s active runs?`, q("killJobRuns"), { n: j.name })),
        button("Delete", () => ctx.act("Delete", `Delete ${j.name} and kill its active runs?`, q("deleteJob"), { n: j.name }).then((r) => r && ctx.go(ctx.link("jobs"))), "danger"))),
      h("div", { class: "cards" },
        h("div", { class: "card" }, h("h3", {}, "Next due"), h("p", { class: "big" }, j.nextDue.length ? relTime(j.nextDue[0]) : "–"), h("p", { class: "muted" }, j.nextDue.map(fmtTime).join(" · ") || "not scheduled")),
        h("div", { class: "card" }, h("h3", {}, "Outcomes"), h("p", { class: "big" }, `${j.successCount} ✓ ${j.errorCount} ✗`), h("p", { class: "muted" }, `last success ${fmtTime(j.lastSuccess)} · last error ${fmtTime(j.lastError)}`)),
        h("div", { class: "card" }, h("h3", {}, "Durations"), h("p", { class: "big" }, fmtDuration(j.durations.p50)), h("p", { class: "muted" }, `p50 of ${j.durations.count} · p99 ${fmtDuration(j.durations.p99)} · max ${fmtDuration(j.durations.max)}`))),
      section("Run durations", durationChart(j.history)),
      section("Runs", table(["Scheduled for", "Cause", "Outcome", "Attempts", "Took", "Task", "Message"], j.history.map((r) => h("tr", {},
        h("td", {}, fmtTime(r.scheduledFor)), h("td", {}, typeof r.cause === "string" ? r.cause : brief(r.cause)), h("td", {}, outcome(r)),
        h("td", {}, String(r.attempts.length), r.attempts.filter((x) => x.retryReason).map((x) => h("div", { class: "muted" }, `retry ${x.attempt}: ${x.retryReason}`))),
        h("td", {}, fmtDuration(runSeconds(r))),
        h("td", {}, r.task ? [h("span", { class: "mono" }, r.task.id), " ", badge(r.task.state), r.task.agent ? ` on ${r.task.agent.hostname}` : ""] : "–"),
        h("td", {}, r.message || ""))), "No runs yet.")),
      j.missed.length ? section("Missed runs", table(["Was due", "Noticed", "Why"], j.missed.map((m) => h("tr", {},
        h("td", {}, fmtTime(m.scheduledFor)), h("td", {}, fmtTime(m.at)), h("td", {}, m.reason))), "")) : null,
      section("Dependencies", graph(ctx, j.name, d.jobGraph.edges)),
      section("Definition", h("pre", { class: "json" }, JSON.stringify(j.definition, null, 2))));
  },
};

// ---------------------------------------------------------------- deployments

const deployments = {
  title: () => "Deployments",
  relevant: (type) => /^(Deployment|App)/.test(type),
  async render(ctx) {
    const d = await gql(`query($asOf: AsOf) { deployments(asOf: $asOf) { id version appIds steps totalSteps completedSteps status reason startedAt endedAt } }`, { asOf: ctx.asOf });
    const list = [...d.deployments].sort((a, b) => (b.startedAt > a.startedAt ? 1 : -1));
    const running = list.filter((x) => x.status === "RUNNING");
    const ended = list.filter((x) => x.status !== "RUNNING");
    return h("div", {}, header("Deployments", "Every change to apps is a deployment of steps."),
      section(`Running (${running.length})`, running.length ? running.map((dep) => deploymentRow(ctx, dep)) : h("p", { class: "empty" }, "No deployment is running.")),
      section(`Ended (${ended.length})`, table(["Deployment", "Apps", "Status", "Steps", "Started", "Ended", "Reason"], ended.map((x) => h("tr", {},
        h("td", { class: "mono" }, x.id), h("td", {}, x.appIds.map((id, i) => [i ? ", " : "", h("a", { href: ctx.link("app", id) }, id)])),
        h("td", {}, badge(x.status)), h("td", {}, `${x.completedSteps} / ${x.totalSteps}`),
        h("td", {}, fmtTime(x.startedAt)), h("td", {}, fmtTime(x.endedAt)), h("td", {}, x.reason || ""))), "None ended yet.")));
  },
};

// ---------------------------------------------------------------- events

const FILTERS = [["types", "Types", "AppCreated,TaskStatusUpdated"], ["app", "App", "/web"], ["job", "Job", "nightly"], ["agent", "Agent", "agent id"], ["task", "Task", "task id"], ["actor", "Actor", "user:alice"]];

function filterOf(params) {
  const f = {};
  for (const [k] of FILTERS) {
    const v = params.get(k);
    if (v) f[k] = k === "types" ? v.split(",").map((x) => x.trim()).filter(Boolean) : v;
  }
  return f;
}

/** Whether a value names `wanted` under one of `keys`, at any depth (as the API's filter). */
function mentions(v, keys, wanted) {
  if (Array.isArray(v)) return v.some((x) => mentions(x, keys, wanted));
  if (v && typeof v === "object") {
    return Object.entries(v).some(([k, x]) => (keys.includes(k) && (x === wanted || (Array.isArray(x) && x.includes(wanted)))) || mentions(x, keys, wanted));
  }
  return false;
}

function matches(f, e) {
  if (f.types && !f.types.includes(e.type)) return false;
  if (f.actor && e.actor.principal !== f.actor && e.actor.principal.split(":")[1] !== f.actor) return false;
  const keys = { app: ["app_id", "app_ids"], job: ["job", "parents"], task: ["task_id"], agent: ["agent_id"] };
  return Object.entries(keys).every(([k, ks]) => !f[k] || mentions(e.payload, ks, f[k]));
}

function eventRow(ctx, e) {
  const p = e.payload || {};
  const subject = p.app_id ? h("a", { href: ctx.link("app", p.app_id) }, p.app_id)
    : p.job ? h("a", { href: ctx.link("job", p.job) }, p.job) : p.task_id || p.agent_id || "";
  return h("tr", {},
    h("td", { class: "num" }, h("a", { href: `#/events?at=${e.offset}`, title: "See the log as of this event" }, String(e.offset))),
    h("td", {}, fmtTime(e.at)), h("td", {}, h("span", { class: `kind ${e.type.replace(/[A-Z][a-z]+$/, "")}` }, e.type)),
    h("td", {}, subject), h("td", {}, e.actor.principal, e.actor.api ? h("span", { class: "muted" }, ` via ${e.actor.api}`) : ""),
    h("td", {}, h("details", { "data-key": `event:${e.offset}` }, h("summary", {}, brief(p).slice(0, 60)), h("pre", { class: "json" }, JSON.stringify(p, null, 2)))));
}

const EVENT_HEADERS = ["Offset", "At", "Type", "About", "Actor", "Payload"];

const events = (() => {
  let body = null;
  let filter = {};
  let liveCtx = null;
  return {
    title: () => "Events",
    relevant: () => false,
    onEvent(e) {
      if (!body || !document.body.contains(body) || !matches(filter, e)) return;
      body.prepend(eventRow(liveCtx, e));
      while (body.children.length > 200) body.lastChild.remove();
      const empty = document.getElementById("events-empty");
      if (empty) empty.remove();
    },
    async render(ctx) {
      filter = filterOf(ctx.params);
      liveCtx = ctx;
      const d = await gql(`query($f: EventFilter, $asOf: AsOf) { events(filter: $f, asOf: $asOf, last: 100) { head scannedTo nodes { offset at type actor { principal api } payload } } }`,
        { f: filter, asOf: ctx.asOf });
      const nodes = [...d.events.nodes].reverse();
      body = h("tbody", {}, nodes.map((e) => eventRow(ctx, e)));
      const inputs = FILTERS.map(([k, label, hint]) => h("label", { for: `ev-${k}` }, label, h("input", { id: `ev-${k}`, name: k, placeholder: hint, value: ctx.params.get(k) || "" })));
      const form = h("form", { class: "filters", onsubmit: (ev) => {
        ev.preventDefault();
        const extra = {};
        for (const i of form.querySelectorAll("input")) extra[i.name] = i.value.trim();
        ctx.go(ctx.link("events", "", extra));
      } }, inputs, h("button", { type: "submit" }, "Filter"));
      return h("div", {},
        header("Events", ctx.live ? "The log as it is appended, newest first. Click an offset to see the cluster as of that event." : `The last events up to the point shown (log head ${d.events.head}).`),
        section("", form, h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, EVENT_HEADERS.map((x) => h("th", { scope: "col" }, x)))), body)),
          nodes.length ? null : h("p", { class: "empty", id: "events-empty" }, "No events match.")));
    },
  };
})();

// ---------------------------------------------------------------- audit

const audit = {
  title: () => "Audit",
  relevant: (type) => !/^(Offer|Task(StatusUpdated|Launched)|Leader|Master)/.test(type),
  async render(ctx) {
    const subject = ctx.params.get("subject") || null;
    const actor = ctx.params.get("actor") || null;
    const d = await gql(`query($asOf: AsOf, $subject: String, $actor: String, $after: String) { audit(asOf: $asOf, subject: $subject, actor: $actor, first: 50, after: $after) {
      totalCount pageInfo { hasNextPage endCursor } nodes { offset at type subject previous actor { principal api remoteAddr requestId } } } }`,
    { asOf: ctx.asOf, subject, actor, after: ctx.params.get("after") || null });
    const conn = d.audit;
    const change = (e) => {
      const box = h("div", {}, "Loading…");
      gql(`query($s: String, $after: String) { audit(subject: $s, first: 1, after: $after) { nodes { change { changes { path before after } } } } }`,
        { s: e.subject, after: String(e.offset + 1) })
        .then((r) => {
          const c = r.audit.nodes[0] && r.audit.nodes[0].change;
          fill(box, c ? diffTable(c.changes) : h("p", { class: "muted" }, "No definition to compare for this change."));
        })
        .catch((err) => fill(box, h("p", { class: "error-text" }, err.message)));
      return box;
    };
    const rows = conn.nodes.map((e) => {
      const details = h("details", { "data-key": `audit:${e.offset}` }, h("summary", {}, "before / after"));
      details.addEventListener("toggle", () => { if (details.open && details.children.length === 1) details.append(change(e)); }, { once: false });
      return h("tr", {},
        h("td", { class: "num" }, h("a", { href: `#/audit?at=${e.offset}` }, String(e.offset))), h("td", {}, fmtTime(e.at)),
        h("td", {}, h("a", { href: ctx.link("audit", "", { actor: e.actor.principal }) }, e.actor.principal),
          h("span", { class: "muted" }, [e.actor.api && ` via ${e.actor.api}`, e.actor.remoteAddr && ` from ${e.actor.remoteAddr}`].filter(Boolean).join(""))),
        h("td", {}, e.type), h("td", {}, h("a", { href: ctx.link("audit", "", { subject: e.subject }) }, e.subject)),
        h("td", {}, /^(app|job):/.test(e.subject) ? details : ""));
    });
    const filterNote = subject || actor ? h("p", {}, `Only ${[subject && `changes to ${subject}`, actor && `changes by ${actor}`].filter(Boolean).join(", ")}. `, h("a", { href: ctx.link("audit") }, "Show all")) : null;
    return h("div", {}, header("Audit", "Who changed what, when and from where; newest first."),
      section("", filterNote, table(["Offset", "At", "Who", "What", "Subject", "Change"], rows, "No changes recorded."), pager(ctx, "audit", conn, "changes")));
  },
};

export const VIEWS = { cluster, apps, app, jobs, job, deployments, events, audit };
