// Small DOM helpers shared by the views: element building, times, badges, progress, states.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const localFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

// A time in the viewer's zone, with UTC on hover.
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "–");
  const date = new Date(iso);
  const utc = iso
    .replace("T", " ")
    .replace(/\.\d+Z$/, " UTC")
    .replace(/Z$/, " UTC");
  return h("time", { datetime: iso, title: utc }, localFormat.format(date));
}

export function duration(beginIso, endIso) {
  if (!beginIso) return "–";
  const end = endIso ? new Date(endIso) : new Date();
  let seconds = Math.max(0, Math.round((end - new Date(beginIso)) / 1000));
  const parts = [];
  for (const [unit, size] of [
    ["d", 86400],
    ["h", 3600],
    ["m", 60],
  ]) {
    if (seconds >= size) {
      parts.push(`${Math.floor(seconds / size)}${unit}`);
      seconds %= size;
    }
  }
  if (parts.length < 2) parts.push(`${seconds}s`);
  return parts.join(" ") + (endIso ? "" : " so far");
}

export function badge(status) {
  return h("span", { class: `badge ${String(status).toLowerCase()}` }, status);
}

export function progress(done, total, status) {
  const percent = total ? Math.round((100 * done) / total) : 0;
  return h(
    "span",
    { class: "progress-cell" },
    h("progress", {
      class: String(status).toLowerCase(),
      max: total || 1,
      value: done,
      "aria-label": `${done} of ${total} sub-jobs done`,
    }),
    h(
      "span",
      { class: "progress-text" },
      `${done}/${total}`,
      h("span", { class: "sr-only" }, ` (${percent}%)`),
    ),
  );
}

export function loading(what) {
  return h(
    "p",
    { class: "state loading", role: "status" },
    h("span", { class: "spinner", "aria-hidden": "true" }),
    `Loading ${what}…`,
  );
}

export function empty(message) {
  return h("p", { class: "state empty" }, message);
}

// An API error as the API said it: code, message, request id. "Try again" only where
// trying again may help (unreachable, 408, 429, 5xx): a 400 or 404 would answer the same.
export function errorBox(error, retry) {
  const status = error.status || 0;
  if (!(status === 0 || status === 408 || status === 429 || status >= 500)) retry = null;
  return h(
    "div",
    { class: "state error", role: "alert" },
    h(
      "p",
      {},
      h("strong", { class: "error-code" }, error.code || "Error"),
      " ",
      h("span", { class: "error-message" }, error.message),
    ),
    error.requestId ? h("p", { class: "muted small" }, `Request ID ${error.requestId}`) : null,
    retry ? h("button", { type: "button", class: "button", onclick: retry }, "Try again") : null,
  );
}

export function number(value) {
  return new Intl.NumberFormat().format(value);
}

export const DONE_SUB_JOB = new Set(["SUCCESS", "FAILED"]);
export const ACTIVE = new Set(["WAITING", "RUNNING"]);

// Replaces a container's content and keeps the keyboard focus on the same control (by id
// or data-key), so a refresh never throws a keyboard user back to the top of the page.
export function swap(container, ...children) {
  const active = document.activeElement;
  const inside = active && active !== document.body && container.contains(active);
  const selector =
    inside &&
    (active.id
      ? `#${CSS.escape(active.id)}`
      : active.dataset.key
        ? `[data-key="${CSS.escape(active.dataset.key)}"]`
        : null);
  container.replaceChildren(...children);
  const again = selector && container.querySelector(selector);
  if (again) again.focus();
}

// A list table: column headers, rows, and an optional caption for screen readers.
export function table({ id, headers, rows, caption }) {
  return h(
    "table",
    { class: "list", id },
    caption ? h("caption", { class: "sr-only" }, caption) : null,
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        headers.map((c) => h("th", { scope: "col" }, c)),
      ),
    ),
    h("tbody", {}, rows),
  );
}

// "11–20 of 1,234" and first / previous / next / last; `go(offset)` shows another page.
export function pager({ offset, limit, count, shown, go }) {
  const last = Math.max(0, Math.floor((count - 1) / limit) * limit);
  const button = (label, target, disabled, id) =>
    h("button", { type: "button", class: "button", id, disabled, onclick: () => go(target) }, label);
  return h(
    "div",
    { class: "pager" },
    h(
      "span",
      { id: "page-info" },
      `${number(offset + 1)}–${number(offset + shown)} of `,
      h("strong", { id: "total-count" }, number(count)),
    ),
    h(
      "span",
      { class: "pager-buttons" },
      button("« First", 0, offset === 0, "page-first"),
      button("‹ Previous", Math.max(0, offset - limit), offset === 0, "page-prev"),
      button("Next ›", offset + limit, offset + limit >= count, "page-next"),
      button("Last »", last, offset >= last, "page-last"),
    ),
  );
}
