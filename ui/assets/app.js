// The shell: routing (the URL carries the view and the as-of point), the timeline with
// time travel and replay, the live event stream, dialogs, and the refresh of the shown view.

import { gql, follow, health, setToken, ApiError } from "./gql.js";
import { h, s, fill, fmtTime } from "./util.js";
import { VIEWS, NAV } from "./views.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const banner = document.getElementById("banner");
const status = document.getElementById("status");
const toast = document.getElementById("toast");

// ---- Routing: #/<view>/<arg>?at=<offset|time> ----

function parseRoute() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = hash.split("?");
  const [view, ...rest] = path.split("/");
  const params = new URLSearchParams(query);
  return { view: VIEWS[view] ? view : "apps", arg: rest.length ? decodeURIComponent(rest.join("/")) : "", params };
}

/** The URL of a view at the current as-of point. */
export function link(view, arg = "", extra = {}) {
  const params = new URLSearchParams();
  const at = parseRoute().params.get("at");
  if (at) params.set("at", at);
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null && v !== "") params.set(k, v);
  const q = params.toString();
  return `#/${view}${arg ? `/${encodeURIComponent(arg)}` : ""}${q ? `?${q}` : ""}`;
}

function setAt(at, replace = false) {
  const r = parseRoute();
  if (at === null || at === undefined) r.params.delete("at");
  else r.params.set("at", String(at));
  const q = r.params.toString();
  const url = `#/${r.view}${r.arg ? `/${encodeURIComponent(r.arg)}` : ""}${q ? `?${q}` : ""}`;
  if (replace) {
    history.replaceState(null, "", url);
    render();
  } else {
    location.hash = url;
  }
}

/** The `asOf` argument for the URL's point, or null when live. */
function asOfOf(params) {
  const at = params.get("at");
  if (!at) return null;
  return /^\d+$/.test(at) ? { offset: Number(at) } : { time: at };
}

// ---- Rendering the current view ----

let generation = 0;
let renderPending = false;
let rendering = false;
let current = null;

async function render() {
  if (rendering) {
    renderPending = true;
    return;
  }
  rendering = true;
  const mine = ++generation;
  const route = parseRoute();
  const view = VIEWS[route.view];
  const asOf = asOfOf(route.params);
  for (const a of nav.querySelectorAll("a")) {
    a.setAttribute("aria-current", a.dataset.view === (view.nav || route.view) ? "page" : "false");
    a.href = link(a.dataset.view);
  }
  const ctx = { arg: route.arg, params: route.params, asOf, live: !asOf, operate: false, act, edit, link, go, refresh: scheduleRefresh };
  try {
    ctx.operate = (await whoami()).role !== "READ";
    const [node, state] = await Promise.all([view.render(ctx), gql(`query($asOf: AsOf) { state(asOf: $asOf) { offset at } }`, { asOf })]);
    if (mine !== generation) return;
    current = { view, ctx };
    document.title = `${view.title(ctx)} · cairn`;
    showBanner(asOf, state.state);
    timeline.mark(asOf ? state.state : null);
    const scroll = window.scrollY;
    // What the reader opened stays open when the view re-reads its data.
    const open = new Set([...main.querySelectorAll("details[open][data-key]")].map((d) => d.dataset.key));
    for (const d of node.querySelectorAll("details[data-key]")) if (open.has(d.dataset.key)) d.open = true;
    fill(main, node);
    window.scrollTo(0, scroll);
    // When the view shows its data and takes input (`cairn bench ui` reads the first one).
    performance.mark("cairn:rendered");
  } catch (e) {
    if (mine !== generation) return;
    current = { view, ctx };
    fill(main, errorPanel(e));
  } finally {
    rendering = false;
    main.setAttribute("aria-busy", "false");
    if (renderPending) {
      renderPending = false;
      render();
    }
  }
}

function errorPanel(e) {
  const code = e instanceof ApiError ? e.code : "INTERNAL";
  const hint = {
    UNREACHABLE: "The master cannot be reached; the page retries when the live stream is back.",
    NOT_FOUND: "It does not exist at this point in time.",
    VALIDATION: "The query was refused.",
    TIMEOUT: "The query ran out of time.",
    UNAUTHENTICATED: "The API asks for a token.",
  }[code] || "The query failed.";
  return h("section", { class: "panel error", role: "alert" },
    h("h2", {}, hint), h("p", {}, e.message), h("p", { class: "muted" }, `code: ${code}`),
    h("button", { onclick: () => render() }, "Try again"));
}

function showBanner(asOf, state) {
  if (!asOf) {
    banner.hidden = true;
    document.body.classList.remove("past");
    return;
  }
  document.body.classList.add("past");
  banner.hidden = false;
  fill(banner,
    h("strong", {}, "Time travel: "),
    `the cluster as of offset ${state.offset}, ${fmtTime(state.at)} UTC. Read-only. `,
    h("button", { class: "primary", onclick: () => { timeline.stop(); setAt(null); } }, "Back to live"));
}

let refreshTimer = null;
/** Re-renders the view soon, at most once a second, however many events arrive. */
function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    // Typing in a form or a dialog being open: leave the page as it is until done.
    if (document.querySelector("dialog[open]") || main.contains(document.activeElement) && /INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName)) {
      scheduleRefresh();
      return;
    }
    render();
  }, 1000);
}

export function go(href) {
  location.hash = href;
}

// ---- Actions: every write is a mutation, confirmed first ----

/** Says briefly that an action was done (a refusal stays in its dialog instead). */
function showToast(text) {
  toast.className = "toast ok";
  fill(toast, text);
  toast.hidden = false;
  clearTimeout(showToast.timer);
  showToast.timer = setTimeout(() => { toast.hidden = true; }, 6000);
}

function explain(e) {
  if (e.code === "NOT_LEADER") return "The leader is changing; try again in a moment.";
  if (e.code === "CONFLICT") return `Conflict: ${e.message}`;
  return e.message;
}

/**
 * Asks, then runs a mutation. `fields` are inputs shown in the dialog ({name, label, value,
 * type}); their values join `vars`. Answers the mutation's data, or null when cancelled.
 */
export function act(title, question, mutation, vars = {}, fields = []) {
  const dialog = document.getElementById("dialog");
  const inputs = fields.map((f) => h("input", { id: `f-${f.name}`, name: f.name, type: f.type || "text", value: f.value ?? "", min: f.min, required: true }));
  const error = h("p", { class: "error-text", role: "alert" });
  const ok = h("button", { class: "primary", type: "submit" }, title);
  fill(dialog, h("form", { method: "dialog" },
    h("h2", {}, title), h("p", {}, question),
    fields.map((f, i) => h("label", { for: `f-${f.name}` }, f.label, inputs[i])),
    error,
    h("div", { class: "buttons" }, h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"), ok)));
  return new Promise((resolve) => {
    dialog.querySelector("form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const all = { ...vars };
      fields.forEach((f, i) => { all[f.name] = f.type === "number" ? Number(inputs[i].value) : inputs[i].value; });
      ok.disabled = true;
      try {
        const data = await gql(mutation, all);
        dialog.close();
        showToast(`${title}: done.`);
        scheduleRefresh();
        resolve(data);
      } catch (e) {
        ok.disabled = false;
        fill(error, explain(e));
      }
    });
    dialog.addEventListener("close", () => resolve(null), { once: true });
    dialog.showModal();
    (inputs[0] || ok).focus();
  });
}

/**
 * An editor for a JSON definition: `check(json)`, when given, answers field errors [{path,
 * errors}] without changing anything; `save(json)` applies it (and its refusal's errors show). Errors are shown by their path, and the first one's key is
 * selected in the text.
 */
export function edit(title, initial, check, save) {
  const dialog = document.getElementById("dialog");
  const text = h("textarea", { id: "definition", rows: 22, spellcheck: "false", "aria-label": "Definition (JSON)" });
  text.value = typeof initial === "string" ? initial : JSON.stringify(initial, null, 2);
  const errors = h("div", { class: "field-errors", role: "alert" });
  const parse = () => {
    try {
      return JSON.parse(text.value);
    } catch (e) {
      fill(errors, h("p", { class: "error-text" }, `Not JSON: ${e.message}`));
      return undefined;
    }
  };
  const show = (details, message) => {
    fill(errors, message ? h("p", { class: "error-text" }, message) : null,
      details.length ? h("ul", {}, details.map((d) => h("li", {},
        h("code", { class: "path" }, d.path || "/"), " ", d.errors.join("; ")))) : null);
    const first = details[0] && details[0].path.split("/").filter(Boolean).pop();
    if (first && !/^\d+$/.test(first)) {
      const at = text.value.indexOf(`"${first}"`);
      if (at >= 0) text.setSelectionRange(at, at + first.length + 2);
    }
  };
  const validate = async () => {
    const json = parse();
    if (json === undefined) return false;
    const details = await check(json);
    show(details, details.length ? null : "");
    if (!details.length) fill(errors, h("p", { class: "ok-text" }, "Valid."));
    return details.length === 0;
  };
  const apply = h("button", { class: "primary", type: "submit" }, "Apply");
  fill(dialog, h("form", { method: "dialog", class: "wide" },
    h("h2", {}, title), text, errors,
    h("div", { class: "buttons" },
      h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"),
      check ? h("button", { type: "button", onclick: validate }, "Validate") : null, apply)));
  dialog.querySelector("form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const json = parse();
    if (json === undefined) return;
    apply.disabled = true;
    try {
      await save(json);
      dialog.close();
      showToast(`${title}: done.`);
      scheduleRefresh();
    } catch (e) {
      show(e.details || [], explain(e));
    } finally {
      apply.disabled = false;
    }
  });
  dialog.showModal();
  text.focus();
}

// ---- The timeline: offsets and times, event density, time travel and replay ----

const timeline = (() => {
  const root = document.getElementById("timeline");
  const svg = s("svg", { class: "density", tabindex: 0, role: "slider", "aria-label": "Timeline: move to see the cluster as it was", "aria-valuemin": 0, "aria-valuemax": 100 });
  const label = h("span", { class: "tl-label" }, "Live");
  const speed = h("select", { "aria-label": "Replay speed" },
    [1, 10, 60, 600, 3600].map((x) => h("option", { value: x, selected: x === 60 }, `${x}×`)));
  const play = h("button", { "aria-label": "Replay from this point" }, "▶ Replay");
  const live = h("button", { class: "primary" }, "Live");
  fill(root, svg, h("div", { class: "tl-controls" }, label, play, speed, live));

  let samples = []; // [{offset, t}] by offset
  let marked = null; // {offset, t} of the shown point, null when live
  let hover = null; // t under a drag
  let playing = null;
  const BUCKETS = 120;

  const range = () => samples.length ? [samples[0].t, Math.max(samples[samples.length - 1].t, samples[0].t + 1)] : [0, 1];
  const offsetAt = (t) => {
    if (!samples.length) return 0;
    if (t <= samples[0].t) return samples[0].offset;
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i];
      if (t <= b.t) return b.t === a.t ? b.offset : a.offset + ((b.offset - a.offset) * (t - a.t)) / (b.t - a.t);
    }
    return samples[samples.length - 1].offset;
  };

  function draw() {
    const width = svg.clientWidth || 800;
    const height = 44;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const [t0, t1] = range();
    // The span drawn, in ms since the epoch: what a click's position means (tests read it).
    svg.dataset.t0 = t0;
    svg.dataset.t1 = t1;
    const counts = [];
    for (let i = 0; i < BUCKETS; i++) {
      const a = t0 + ((t1 - t0) * i) / BUCKETS, b = t0 + ((t1 - t0) * (i + 1)) / BUCKETS;
      counts.push(Math.max(0, offsetAt(b) - offsetAt(a)));
    }
    const max = Math.max(1, ...counts);
    const bw = width / BUCKETS;
    const x = (t) => ((t - t0) / (t1 - t0)) * width;
    const children = counts.map((c, i) => {
      // Counts are interpolated between samples: under half an event is none.
      const bh = c >= 0.5 ? Math.max(2, (Math.sqrt(c) / Math.sqrt(max)) * (height - 14)) : 0;
      return s("rect", { x: i * bw + 0.5, y: height - 12 - bh, width: Math.max(1, bw - 1), height: bh, class: "bar" },
        s("title", {}, `${Math.round(c)} events`));
    });
    children.push(s("text", { x: 2, y: height - 1, class: "axis" }, samples.length ? `${fmtTime(new Date(t0).toISOString())} · offset ${samples[0].offset}` : "no events yet"));
    children.push(s("text", { x: width - 2, y: height - 1, class: "axis", "text-anchor": "end" }, samples.length ? `${fmtTime(new Date(t1).toISOString())} · offset ${samples[samples.length - 1].offset}` : ""));
    const at = hover ?? (marked ? marked.t : null);
    if (at !== null) {
      children.push(s("line", { x1: x(at), x2: x(at), y1: 0, y2: height - 12, class: hover !== null ? "cursor drag" : "cursor" }));
    }
    fill(svg, children);
    const pct = at === null ? 100 : Math.round((100 * (at - t0)) / (t1 - t0));
    svg.setAttribute("aria-valuenow", pct);
    svg.setAttribute("aria-valuetext", at === null ? "live" : fmtTime(new Date(at).toISOString()));
    label.textContent = hover !== null ? `→ ${fmtTime(new Date(hover).toISOString())} (≈ offset ${Math.round(offsetAt(hover))})`
      : marked ? `As of ${fmtTime(new Date(marked.t).toISOString())} · offset ${marked.offset}` : "Live";
    play.textContent = playing ? "❚❚ Pause" : "▶ Replay";
  }

  async function load() {
    try {
      const data = await gql(`{ timeline(points: 200) { offset at } }`);
      samples = data.timeline.map((p) => ({ offset: p.offset, t: Date.parse(p.at) }));
    } catch (e) {
      samples = [];
    }
    draw();
  }

  const timeAtX = (clientX) => {
    const r = svg.getBoundingClientRect();
    const [t0, t1] = range();
    return t0 + Math.min(1, Math.max(0, (clientX - r.left) / r.width)) * (t1 - t0);
  };
  const goTo = (t) => {
    stop();
    const [, t1] = range();
    hover = null;
    // The very end is now: live.
    if (t >= t1) setAt(null);
    else setAt(new Date(t).toISOString());
  };
  svg.addEventListener("pointerdown", (e) => {
    svg.setPointerCapture(e.pointerId);
    hover = timeAtX(e.clientX);
    draw();
  });
  svg.addEventListener("pointermove", (e) => {
    if (hover === null) return;
    hover = timeAtX(e.clientX);
    draw();
  });
  svg.addEventListener("pointerup", (e) => {
    if (hover === null) return;
    goTo(timeAtX(e.clientX));
  });
  svg.addEventListener("keydown", (e) => {
    const [t0, t1] = range();
    const step = (t1 - t0) / 100;
    const now = marked ? marked.t : t1;
    if (e.key === "ArrowLeft") goTo(Math.max(t0, now - step));
    else if (e.key === "ArrowRight") goTo(now + step);
    else if (e.key === "Home") goTo(t0);
    else if (e.key === "End" || e.key === "Escape") goTo(t1);
    else return;
    e.preventDefault();
  });
  live.addEventListener("click", () => { stop(); setAt(null); });
  play.addEventListener("click", () => (playing ? stop() : start()));
  new ResizeObserver(draw).observe(svg);

  // Replay: the shown moment advances with the clock times the speed, until the head.
  function start() {
    const [t0, t1] = range();
    let t = marked ? marked.t : t0;
    if (t >= t1) t = t0;
    const tick = () => {
      t += Number(speed.value) * 1000;
      if (t >= range()[1]) {
        stop();
        setAt(null, true);
        return;
      }
      setAt(new Date(t).toISOString(), true);
    };
    playing = setInterval(tick, 1000);
    setAt(new Date(t).toISOString(), true);
    draw();
  }
  function stop() {
    clearInterval(playing);
    playing = null;
    draw();
  }

  let stale = null;
  return {
    load,
    stop,
    mark(state) {
      marked = state ? { offset: state.offset, t: Date.parse(state.at) } : null;
      draw();
    },
    /** A record was appended: extend the head now, reload the samples a little later. */
    appended(event) {
      // Each record is an exact point until the reload thins them to 200 again.
      samples.push({ offset: event.offset, t: Date.parse(event.at) });
      if (!stale) stale = setTimeout(() => { stale = null; load(); }, 5000);
      if (!hover) draw();
    },
  };
})();

// ---- Live: one subscription for the page ----

function connected(ok, why) {
  status.hidden = ok;
  if (!ok) fill(status, why || "The master cannot be reached; retrying…");
}
health.onChange = connected;
// ---- Who is asking: the token's name and role ----

let viewer = null;
const who = document.getElementById("who");
/** The caller as the API sees it, asked once per token. */
async function whoami() {
  if (!viewer) {
    viewer = (await gql(`{ viewer { name role tokenRequired } }`)).viewer;
    fill(who, viewer.tokenRequired ? [
      h("span", { title: "the token's name and role" }, `${viewer.name} · ${viewer.role.toLowerCase()}`),
      h("button", { type: "button", onclick: () => { setToken(""); viewer = null; health.onToken(); } }, "Change token"),
    ] : []);
  }
  return viewer;
}

health.onToken = () => {
  const dialog = document.getElementById("dialog");
  if (dialog.open) return;
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true });
  fill(dialog, h("form", { method: "dialog" },
    h("h2", {}, "A token is needed"),
    h("p", {}, "This cluster's API asks for a token. It is kept in this browser only."),
    h("label", { for: "token" }, "Token", input),
    h("div", { class: "buttons" }, h("button", { class: "primary", type: "submit" }, "Use it"))));
  dialog.querySelector("form").addEventListener("submit", () => { setToken(input.value); viewer = null; render(); });
  dialog.showModal();
};

async function startLive() {
  let head = 0;
  try {
    head = (await gql(`{ state { offset } }`)).state.offset;
  } catch (e) {
    // The subscription's reconnects report the master's state from here on.
  }
  follow(head + 1, (event) => {
    timeline.appended(event);
    if (!current || !current.ctx.live) return;
    if (current.view.onEvent) current.view.onEvent(event);
    if (current.view.relevant(event.type, current.ctx)) scheduleRefresh();
  }, (ok, why) => {
    connected(ok, why);
    if (ok && main.querySelector(".panel.error")) render();
  });
}

// ---- Start ----

fill(nav, NAV.map(([view, label, key]) => h("a", { href: `#/${view}`, "data-view": view, accesskey: key, title: `${label} (accesskey ${key})` }, label)));
window.addEventListener("hashchange", render);
document.addEventListener("keydown", (e) => {
  if (e.target.closest("input, textarea, select, dialog") || e.ctrlKey || e.metaKey || e.altKey) return;
  const hit = NAV.find(([, , key]) => key === e.key);
  if (hit) go(link(hit[0]));
  else if (e.key === "t") document.querySelector("#timeline svg").focus();
});
render();
timeline.load();
startLive();
