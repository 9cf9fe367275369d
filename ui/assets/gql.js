// The UI's only way to the master: GraphQL over HTTP (queries and mutations) and over a
// websocket (the `events` subscription, graphql-transport-ws), both at /graphql.

const TOKEN_KEY = "cairn.token";

/** An error from the API, with its stable `extensions.code` and, for definitions, `details`. */
export class ApiError extends Error {
  constructor(message, code, details) {
    super(message);
    this.code = code || "INTERNAL";
    this.details = details || [];
  }
}

/** Listeners told when the master cannot be reached or asks for a token. */
export const health = { onChange: () => {}, onToken: () => {} };

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

/** Runs a query or mutation; answers `data`, or throws an ApiError. */
export async function gql(query, variables = {}) {
  const headers = { "content-type": "application/json" };
  if (token()) headers.authorization = `Bearer ${token()}`;
  let response;
  try {
    response = await fetch("/graphql", { method: "POST", headers, body: JSON.stringify({ query, variables }) });
  } catch (e) {
    health.onChange(false, "The master cannot be reached.");
    throw new ApiError("The master cannot be reached.", "UNREACHABLE");
  }
  let body;
  try {
    body = await response.json();
  } catch (e) {
    health.onChange(false, `The master answered ${response.status} without JSON.`);
    throw new ApiError(`The master answered ${response.status}.`, "UNREACHABLE");
  }
  health.onChange(true);
  if (body.errors && body.errors.length) {
    const first = body.errors[0];
    const code = first.extensions && first.extensions.code;
    if (code === "UNAUTHENTICATED") health.onToken();
    const details = (first.extensions && first.extensions.details) || [];
    throw new ApiError(body.errors.map((e) => e.message).join("; "), code, details);
  }
  return body.data;
}

/**
 * Follows the log from `from` (an offset) with the `events` subscription, calling `onEvent`
 * for each record in order. Reconnects after a drop from the last offset seen plus one, so no
 * record is missed or seen twice. Answers a function that stops it.
 */
export function follow(from, onEvent, onState = () => {}) {
  let next = from;
  let socket = null;
  let stopped = false;
  let retry = 500;
  let timer = null;
  const query = `subscription($from: Int) { events(from: $from) {
    offset at type actor { principal api } payload } }`;
  const open = () => {
    if (stopped) return;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
    socket = new WebSocket(url, "graphql-transport-ws");
    socket.onopen = () => {
      const payload = token() ? { authorization: `Bearer ${token()}` } : {};
      socket.send(JSON.stringify({ type: "connection_init", payload }));
    };
    socket.onmessage = (message) => {
      const m = JSON.parse(message.data);
      if (m.type === "connection_ack") {
        retry = 500;
        onState(true);
        socket.send(JSON.stringify({ id: "log", type: "subscribe", payload: { query, variables: { from: next } } }));
      } else if (m.type === "ping") {
        socket.send(JSON.stringify({ type: "pong" }));
      } else if (m.type === "next" && m.payload && m.payload.data) {
        const event = m.payload.data.events;
        if (event.offset < next) return;
        next = event.offset + 1;
        onEvent(event);
      } else if (m.type === "error") {
        onState(false, (m.payload || []).map((e) => e.message).join("; "));
      }
    };
    socket.onclose = () => {
      if (stopped) return;
      onState(false, "The live stream was cut; reconnecting…");
      timer = setTimeout(open, retry);
      retry = Math.min(retry * 2, 10000);
    };
  };
  open();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (socket) socket.close();
  };
}
