// The task list: one job type at a time, a status filter, paging with the total count,
// newest first; refreshes itself while any task shown is WAITING or RUNNING.

import { call } from "../api.js";
import {
  ACTIVE,
  DONE_SUB_JOB,
  badge,
  duration,
  empty,
  errorBox,
  h,
  loading,
  number,
  pager,
  progress,
  swap,
  table,
  time,
} from "../dom.js";

export const JOB_TYPES = [
  ["CREATE_SERVER", "Create server"],
  ["CREATE_SERVER_IMAGE", "Create image"],
  ["DELETE_SERVER", "Delete server"],
];
const STATUSES = ["WAITING", "RUNNING", "SUCCESS", "FAILED"];
const PAGE_SIZES = ["10", "20", "50", "100"];
// Running tasks with several sub-jobs get their progress from ShowImageJob; at most this
// many per refresh, so a page of running tasks stays cheap for the server.
const PROGRESS_LOOKUPS = 20;

// Where "Back to tasks" leads: the list as last shown, filters and page included.
export let lastListHash = "#/tasks";

export function typeLabel(jobType) {
  const known = JOB_TYPES.find(([code]) => code === jobType);
  return known ? known[1] : jobType;
}

// The choices of a filter, plus the URL's value when it is none of them (a bookmark, an
// edited link): the control then shows what the list asked for, and the API's answer
// (rows, or its message for a bad value) matches what the control says.
function withCurrent(choices, current) {
  return current && !choices.includes(current) ? [...choices, current] : choices;
}

export function doneOf(job, detail) {
  if (job.status === "SUCCESS" || job.status === "FAILED") return job.sub_jobs_total;
  if (detail) return detail.sub_jobs.filter((s) => DONE_SUB_JOB.has(s.status)).length;
  return 0;
}

export function renderTasks({ main, navigate, autoRefresh, isCurrent }, params) {
  const filters = {
    job_type: params.get("job_type") || "CREATE_SERVER",
    status: params.get("status") || "",
    offset: params.get("offset") || "0",
    limit: params.get("limit") || "10",
  };
  // The URL of the list with some filters changed; defaults are left out to keep it short.
  const paramsFor = (changes) => {
    const next = { ...filters, ...changes };
    for (const name of Object.keys(next)) if (next[name] === "" || next[name] === "0") delete next[name];
    if (next.job_type === "CREATE_SERVER") delete next.job_type;
    if (next.limit === "10") delete next.limit;
    return next;
  };
  const go = (changes) => navigate("/tasks", paramsFor(changes));
  document.title = `${typeLabel(filters.job_type)} tasks · imagejobs console`;
  lastListHash = location.hash || "#/tasks";

  const typeTabs = h(
    "nav",
    { class: "segmented", "aria-label": "Job type" },
    JOB_TYPES.map(([code, label]) =>
      h(
        "a",
        {
          href: `#/tasks?${new URLSearchParams(paramsFor({ job_type: code, offset: "0" }))}`,
          class: code === filters.job_type ? "active" : null,
          "aria-current": code === filters.job_type ? "true" : null,
          dataset: { jobType: code },
        },
        label,
      ),
    ),
  );
  const statusSelect = h(
    "select",
    { id: "status-filter", onchange: (e) => go({ status: e.target.value, offset: "0" }) },
    h("option", { value: "" }, "All statuses"),
    withCurrent(STATUSES, filters.status).map((s) =>
      h("option", { value: s, selected: s === filters.status }, s),
    ),
  );
  const sizeSelect = h(
    "select",
    { id: "page-size", onchange: (e) => go({ limit: e.target.value, offset: "0" }) },
    withCurrent(PAGE_SIZES, filters.limit).map((s) =>
      h("option", { value: s, selected: s === filters.limit }, `${s} per page`),
    ),
  );
  // Not a live region: announcing every refresh would drown a screen reader.
  const live = h("span", { class: "live muted small", id: "live" });
  const body = h("div", { id: "tasks-body" }, loading("tasks"));
  const refreshButton = h(
    "button",
    { type: "button", class: "button ghost", id: "refresh", onclick: () => refresh() },
    "Refresh",
  );

  main.append(
    h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, "Tasks"), live),
    h(
      "div",
      { class: "toolbar" },
      typeTabs,
      h("label", { class: "inline" }, h("span", { class: "sr-only" }, "Status"), statusSelect),
      h("label", { class: "inline" }, h("span", { class: "sr-only" }, "Page size"), sizeSelect),
      refreshButton,
    ),
    body,
  );

  let cycles = 0;
  let shown = false;
  async function cycle() {
    let page;
    const details = new Map();
    try {
      page = await call("ListImageJobs", { query: filters });
      const running = page.items.filter((j) => j.status === "RUNNING" && j.sub_jobs_total > 1);
      await Promise.all(
        running.slice(0, PROGRESS_LOOKUPS).map((j) =>
          call("ShowImageJob", { path: { job_id: j.id } }).then(
            (d) => details.set(j.id, d),
            () => null,
          ),
        ),
      );
    } catch (error) {
      if (!isCurrent()) return false;
      if (!shown)
        swap(
          body,
          errorBox(error, () => refresh()),
        );
      else live.textContent = `Refresh failed: ${error.code} ${error.message}`;
      return true;
    }
    if (!isCurrent()) return false;
    cycles += 1;
    shown = true;
    swap(body, draw(page, details));
    body.dataset.cycles = String(cycles);
    const active = page.items.some((j) => ACTIVE.has(j.status));
    const at = new Date().toLocaleTimeString();
    live.textContent = active ? `Updating automatically · last update ${at}` : `Updated ${at}`;
    if (cycles === 1) performance.mark("imagejobs:tasks-ready");
    return active;
  }

  function draw(page, details) {
    const offset = Number(filters.offset) || 0;
    const limit = Number(filters.limit) || 10;
    if (!page.items.length) {
      const status = filters.status ? ` with status ${filters.status}` : "";
      const what = `${typeLabel(filters.job_type)} tasks${status}`;
      if (page.count && offset) {
        return h(
          "div",
          { class: "state empty" },
          h("p", {}, `This page is past the last of ${number(page.count)} ${what}.`),
          h(
            "button",
            { type: "button", class: "button", onclick: () => go({ offset: "0" }) },
            "Go to the first page",
          ),
        );
      }
      return empty(`No ${what} yet.`);
    }
    const rows = page.items.map((job) =>
      h(
        "tr",
        { dataset: { jobId: job.id, status: job.status } },
        h(
          "td",
          { "data-label": "Task" },
          h("a", { href: `#/tasks/${job.id}`, class: "mono", dataset: { key: `task-${job.id}` } }, job.id),
        ),
        h("td", { "data-label": "Status" }, badge(job.status)),
        h(
          "td",
          { "data-label": "Progress" },
          progress(doneOf(job, details.get(job.id)), job.sub_jobs_total, job.status),
        ),
        h("td", { "data-label": "Started" }, time(job.begin_time)),
        h("td", { "data-label": "Duration" }, duration(job.begin_time, job.end_time)),
      ),
    );
    return h(
      "div",
      {},
      table({
        id: "tasks-table",
        caption: `${typeLabel(filters.job_type)} tasks, newest first`,
        headers: ["Task", "Status", "Progress", "Started", "Duration"],
        rows,
      }),
      pager({
        offset,
        limit,
        count: page.count,
        shown: page.items.length,
        go: (to) => go({ offset: String(to) }),
      }),
    );
  }

  const refresh = autoRefresh(cycle);
  refresh();
}
