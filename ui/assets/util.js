// Small helpers shared by the views: building DOM, formatting numbers, times and schedules.
// Text always goes in through textContent and text nodes, so nothing from the API is markup.

const SVG = "http://www.w3.org/2000/svg";

/** An element: h("td", {class: "num"}, "3", child, …). `on*` attributes become listeners. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element, likewise. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function fmtNum(n, digits = 1) {
  if (n === null || n === undefined) return "–";
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

export function fmtMem(mib) {
  if (mib >= 1024) return `${(mib / 1024).toFixed(1)} GiB`;
  return `${fmtNum(mib, 0)} MiB`;
}

export function fmtPorts(ranges) {
  if (!ranges || !ranges.length) return "–";
  return ranges.map((r) => (r.begin === r.end ? `${r.begin}` : `${r.begin}–${r.end}`)).join(", ");
}

export function portCount(ranges) {
  return (ranges || []).reduce((n, r) => n + r.end - r.begin + 1, 0);
}

/** "2026-11-27T04:49:15.123456Z" → "2026-11-27 04:49:15" (UTC, as the log keeps it). */
export function fmtTime(t) {
  if (!t) return "–";
  return t.replace("T", " ").replace(/\.\d+/, "").replace(/Z$/, "").replace(/\+00:00$/, "");
}

/** How long ago (or ahead) `t` is from `now`, in words. */
export function relTime(t, now = Date.now()) {
  if (!t) return "";
  const d = (Date.parse(t) - now) / 1000;
  const a = Math.abs(d);
  const words = a < 60 ? `${Math.round(a)} s` : a < 3600 ? `${Math.round(a / 60)} min`
    : a < 86400 ? `${(a / 3600).toFixed(1)} h` : `${(a / 86400).toFixed(1)} d`;
  return d >= 0 ? `in ${words}` : `${words} ago`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

const UNITS = { Y: "year", M: "month", W: "week", D: "day", H: "hour", TM: "minute", S: "second" };

/** An ISO 8601 duration (`P1DT2H`, `PT30M`) in words; the input back when it is not one. */
export function durationWords(period) {
  const m = /^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(period || "");
  if (!m) return period || "";
  const parts = [];
  ["Y", "M", "W", "D", "H", "TM", "S"].forEach((u, i) => {
    const n = m[i + 1];
    if (n && Number(n) !== 0) parts.push(Number(n) === 1 ? UNITS[u] : `${n} ${UNITS[u]}s`);
  });
  return parts.join(" ") || "no time";
}

/** A Chronos schedule `R[n]/start/period` in words. */
export function scheduleWords(schedule, zone) {
  if (!schedule) return "after its parents succeed";
  const [rep, start, period] = schedule.split("/");
  if (period === undefined) return schedule;
  const times = rep === "R" || rep === "R-1" ? "" : rep === "R0" ? ", never" : rep === "R1" ? ", once" : `, ${rep.slice(1)} times`;
  const from = start ? ` from ${fmtTime(start)}${zone ? ` (${zone})` : " UTC"}` : "";
  return `every ${durationWords(period)}${from}${times}`;
}

/** A JSON value in one line, for tables. */
export function brief(v) {
  if (v === undefined) return "–";
  const text = JSON.stringify(v);
  return text.length > 120 ? `${text.slice(0, 117)}…` : text;
}

/** The state's CSS class: ok, warn, bad or idle. */
export function stateClass(state) {
  if (!state) return "idle";
  if (/RUNNING|FINISHED_OK|succeeded|ACTIVE|healthy/i.test(state)) return "ok";
  if (/STAGING|STARTING|KILLING|running|DISCONNECTED|queued/i.test(state)) return "warn";
  if (/FAILED|LOST|ERROR|DROPPED|GONE|UNREACHABLE|failed|missed|REMOVED/i.test(state)) return "bad";
  return "idle";
}

export function badge(text, cls = stateClass(text)) {
  return h("span", { class: `badge ${cls}` }, text);
}

/** A bar showing used (and offered) out of total. */
export function meter(used, offered, total, label) {
  const pct = (x) => (total > 0 ? Math.min(100, (100 * x) / total) : 0);
  return h("div", { class: "meter", title: label, role: "img", "aria-label": label },
    h("span", { class: "used", style: `width:${pct(used)}%` }),
    h("span", { class: "offered", style: `width:${pct(offered)}%` }),
    h("em", {}, label));
}

/** Encodes an id for a URL path segment (app ids hold slashes). */
export function enc(id) {
  return encodeURIComponent(id);
}
