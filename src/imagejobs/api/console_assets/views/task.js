// A task's detail: status, progress, timings, its sub-jobs with their resources, and for a
// failure the error code and message first.

import { call } from "../api.js";
import { ACTIVE, badge, duration, errorBox, h, loading, progress, swap, table, time } from "../dom.js";
import { doneOf, lastListHash, typeLabel } from "./tasks.js";

export function renderTask({ main, autoRefresh, isCurrent }, jobId) {
  document.title = `Task ${jobId} · imagejobs console`;
  const body = h("div", { id: "task-body" }, loading("the task"));
  main.append(
    h("p", { class: "crumbs" }, h("a", { href: lastListHash, id: "back-to-tasks" }, "‹ Back to tasks")),
    h("h1", { tabindex: "-1" }, "Task ", h("span", { class: "mono" }, jobId)),
    body,
  );

  async function cycle() {
    let job;
    try {
      job = await call("ShowImageJob", { path: { job_id: jobId } });
    } catch (error) {
      if (isCurrent())
        swap(
          body,
          errorBox(error, () => cycle()),
        );
      return error.status >= 500 || error.status === 0;
    }
    if (!isCurrent()) return false;
    swap(body, draw(job));
    return ACTIVE.has(job.status);
  }

  function draw(job) {
    const failures = job.sub_jobs.filter((s) => s.status === "FAILED" || s.job_execute_info.error_code);
    const failureBox = failures.length
      ? h(
          "section",
          { class: "failure", role: "alert", id: "task-failure", "aria-labelledby": "failure-title" },
          h(
            "h2",
            { id: "failure-title" },
            failures.length === 1 ? "This task failed" : `${failures.length} sub-jobs failed`,
          ),
          failures.map((s) =>
            h(
              "div",
              { class: "failure-item" },
              h(
                "p",
                {},
                h("strong", { class: "error-code mono" }, s.job_execute_info.error_code || "(no code)"),
                " ",
                h("span", { class: "error-message" }, s.job_execute_info.error_message || "(no message)"),
              ),
              h(
                "p",
                { class: "muted small" },
                `Sub-job ${s.id}`,
                s.job_resource_info.resource_name ? ` · ${s.job_resource_info.resource_name}` : "",
              ),
            ),
          ),
        )
      : null;
    const facts = [
      ["Type", `${typeLabel(job.job_type)} (${job.job_type})`],
      ["Status", badge(job.status)],
      ["Progress", progress(doneOf(job, job), job.sub_jobs_total, job.status)],
      ["Started", time(job.begin_time)],
      ["Ended", time(job.end_time)],
      ["Duration", duration(job.begin_time, job.end_time)],
    ];
    const rows = job.sub_jobs.map((s) =>
      h(
        "tr",
        { dataset: { subJobId: s.id, status: s.status } },
        h("td", { "data-label": "Sub-job", class: "mono" }, s.id),
        h("td", { "data-label": "Status" }, badge(s.status)),
        h(
          "td",
          { "data-label": "Resource" },
          // One block: on a phone a cell lays its children out in a row beside its label.
          h(
            "div",
            { class: "stack" },
            h("div", {}, s.job_resource_info.resource_name || h("span", { class: "muted" }, "–")),
            h("div", { class: "mono muted small" }, s.job_resource_info.resource_id),
          ),
        ),
        h("td", { "data-label": "Started" }, time(s.begin_time)),
        h("td", { "data-label": "Ended" }, time(s.end_time)),
        h("td", { "data-label": "Duration" }, duration(s.begin_time, s.end_time)),
        h(
          "td",
          { "data-label": "Error" },
          s.job_execute_info.error_code
            ? h("span", { class: "error-code mono" }, s.job_execute_info.error_code)
            : h("span", { class: "muted" }, "–"),
        ),
      ),
    );
    return h(
      "div",
      {},
      failureBox,
      h(
        "dl",
        { class: "facts" },
        facts.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]),
      ),
      h("h2", {}, `Sub-jobs (${job.sub_jobs.length})`),
      job.sub_jobs.length
        ? table({
            id: "sub-jobs-table",
            headers: ["Sub-job", "Status", "Resource", "Started", "Ended", "Duration", "Error"],
            rows,
          })
        : h("p", { class: "state empty" }, "This task has no sub-jobs."),
    );
  }

  autoRefresh(cycle)();
}
