// The console's only way to the server: the public API, by operation id, with the
// operations table the page carries (api/operations.py), and the IAM token API.

const OPERATIONS = JSON.parse(document.getElementById("operations").textContent);
const SESSION_KEY = "imagejobs.console.session";

export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

// Called when the server no longer accepts the session's token (401).
let onSessionEnded = () => {};
export function whenSessionEnds(handler) {
  onSessionEnded = handler;
}

export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

function saveSession(value) {
  if (value) sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else sessionStorage.removeItem(SESSION_KEY);
}

function urlOf(operationId, path = {}, query = {}) {
  const operation = OPERATIONS[operationId];
  if (!operation) throw new Error(`unknown operation ${operationId}`);
  const filled = operation.path.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(path[name]));
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(name, value);
  }
  // A form's "+" for a space would reach the API as a plus sign: it reads queries as the
  // signature does (docs/security.md), so spaces go as %20.
  const search = params.toString().replace(/\+/g, "%20");
  return { method: operation.method, url: search ? `${filled}?${search}` : filled };
}

async function errorOf(response) {
  const requestId = response.headers.get("X-Request-Id") || "";
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: described below
  }
  if (body && body.error_code) {
    return new ApiError(response.status, body.error_code, body.error_msg, requestId);
  }
  if (body && body.error) {
    // The Keystone-compatible token API's own error shape.
    return new ApiError(response.status, body.error.title, body.error.message, requestId);
  }
  return new ApiError(response.status, `HTTP ${response.status}`, response.statusText, requestId);
}

async function send(operationId, { path = {}, query = {}, body, token, headers = {} } = {}) {
  const { method, url } = urlOf(operationId, path, query);
  const init = { method, headers: { ...headers }, credentials: "omit", cache: "no-store" };
  if (token) init.headers["X-Auth-Token"] = token;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, "NETWORK", "The server cannot be reached. Is it running?", "");
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

// One operation of the project signed in to; a 401 ends the session.
export async function call(operationId, { path = {}, query, body } = {}) {
  const current = session();
  if (!current) throw new ApiError(401, "APIGW.0301", "Sign in first.", "");
  try {
    const response = await send(operationId, {
      path: { project_id: current.projectId, ...path },
      query,
      body,
      token: current.token,
    });
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  } catch (error) {
    if (error.status === 401) {
      saveSession(null);
      onSessionEnded(error);
    }
    throw error;
  }
}

function sessionOf(token, info) {
  const project = info.token.project;
  return {
    token,
    projectId: project.id,
    projectName: project.name,
    user: info.token.user.name,
    account: info.token.user.domain.name,
    expiresAt: info.token.expires_at,
  };
}

async function passwordToken(account, user, password, scope) {
  const body = {
    auth: {
      identity: {
        methods: ["password"],
        password: { user: { name: user, password, domain: { name: account } } },
      },
      scope,
    },
  };
  const response = await send("KeystoneCreateUserTokenByPassword", {
    query: { nocatalog: "true" },
    body,
  });
  return { token: response.headers.get("X-Subject-Token"), info: await response.json() };
}

// Password sign-in. Without a project name, the account's first project is used.
export async function signInWithPassword({ account, user, password, project }) {
  let scope;
  if (project) {
    scope = /^[0-9a-f]{32}$/.test(project) ? { project: { id: project } } : { project: { name: project } };
  } else {
    const domainScoped = await passwordToken(account, user, password, { domain: { name: account } });
    const response = await send("KeystoneListProjects", { token: domainScoped.token });
    const { projects } = await response.json();
    await revoke(domainScoped.token);
    if (!projects.length) throw new ApiError(403, "NO_PROJECT", "This account has no project.", "");
    scope = { project: { id: projects[0].id } };
  }
  const { token, info } = await passwordToken(account, user, password, scope);
  saveSession(sessionOf(token, info));
  return session();
}

export async function signInWithToken(token) {
  const response = await send("KeystoneValidateToken", {
    query: { nocatalog: "true" },
    token,
    headers: { "X-Subject-Token": token },
  });
  const info = await response.json();
  if (!info.token.project) {
    throw new ApiError(400, "NO_PROJECT", "This token is not scoped to a project.", "");
  }
  saveSession(sessionOf(token, info));
  return session();
}

async function revoke(token) {
  try {
    await send("KeystoneRevokeToken", { token, headers: { "X-Subject-Token": token } });
  } catch {
    // Already invalid: nothing to revoke.
  }
}

export async function signOut() {
  const current = session();
  saveSession(null);
  if (current) await revoke(current.token);
}
