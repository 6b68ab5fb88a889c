// Image servers: list, create (the API validates the form), build an image, delete; each
// started task is shown at once and followed until it ends.

import { call } from "../api.js";
import { ACTIVE, badge, empty, errorBox, h, loading, pager, progress, swap, table, time } from "../dom.js";
import { doneOf, typeLabel } from "./tasks.js";

const CHANGING = new Set(["CREATING", "BUILDING", "DELETING"]);
// Tasks started from this page, newest first; kept while the console is open.
const started = [];

function field(label, name, attributes = {}) {
  return h(
    "label",
    { class: "field" },
    h("span", {}, label),
    h("input", { name, id: `server-${name}`, ...attributes }),
  );
}

function select(label, name, options, chosen) {
  return h(
    "label",
    { class: "field" },
    h("span", {}, label),
    h(
      "select",
      { name, id: `server-${name}` },
      options.map((o) => h("option", { value: o, selected: o === chosen }, o)),
    ),
  );
}

function formAlert(id) {
  return h("div", { class: "form-error", role: "alert", id });
}

function showError(alert, error) {
  alert.replaceChildren(
    h("strong", { class: "error-code" }, error.code),
    " ",
    h("span", { class: "error-message" }, error.message),
    error.requestId ? h("span", { class: "muted small" }, ` (request ${error.requestId})`) : null,
  );
}

function createBody(data) {
  const text = (name) => data.get(name).trim();
  const body = {
    name: text("name"),
    description: text("description"),
    image_ref: { id: text("image_id"), image_type: data.get("image_type") },
    product_id: text("product_id"),
    vpc_id: text("vpc_id"),
    subnet_id: text("subnet_id"),
    root_volume: { type: data.get("volume_type"), size: Number(text("volume_size")) },
    authorize_accounts: [{ account: text("account"), account_type: "USER" }],
  };
  if (text("flavor_id")) body.flavor_id = text("flavor_id");
  return body;
}

export function renderServers({ main, navigate, autoRefresh, isCurrent }, params) {
  document.title = "Image servers · imagejobs console";
  const offset = Number(params.get("offset")) || 0;
  const limit = 10;

  const createAlert = formAlert("create-error");
  const createForm = h(
    "form",
    { id: "create-form", class: "grid-form", novalidate: true },
    createAlert,
    field("Name", "name", { placeholder: "1-64 letters, digits, - and _" }),
    field("Description", "description"),
    field("Image ID", "image_id"),
    select("Image type", "image_type", ["public", "private", "shared", "gold", "other"], "public"),
    field("Product ID", "product_id", { placeholder: "workspace.x86.a.b" }),
    field("Flavor ID (optional)", "flavor_id"),
    field("VPC ID", "vpc_id"),
    field("Subnet ID", "subnet_id"),
    select("System disk type", "volume_type", ["SSD", "ESSD", "GPSSD", "SAS", "SATA"], "SSD"),
    field("System disk size (GB)", "volume_size", { type: "number", value: "80", step: "10" }),
    field("Authorized user", "account"),
    h(
      "div",
      { class: "form-actions" },
      h("button", { type: "submit", class: "button primary", id: "create-submit" }, "Create"),
      h("button", { type: "button", class: "button ghost", onclick: () => togglePanel(false) }, "Cancel"),
    ),
  );
  const createPanel = h(
    "section",
    { class: "card panel", id: "create-panel", hidden: true, "aria-labelledby": "create-title" },
    h("h2", { id: "create-title" }, "Create an image server"),
    createForm,
  );
  // Closing the panel (Cancel, or a create that went through) hid the control that had the
  // focus, which fell back to the page's start: give it to the button that opens the panel.
  const togglePanel = (open) => {
    const opener = main.querySelector("#open-create");
    const focusInside = createPanel.contains(document.activeElement);
    createPanel.hidden = !open;
    opener?.setAttribute("aria-expanded", String(open));
    if (open) createForm.querySelector("input").focus();
    else if (focusInside) opener?.focus();
  };
  createForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = createForm.querySelector("#create-submit");
    button.disabled = true;
    createAlert.replaceChildren();
    try {
      const { job_id: jobId } = await call("CreateImageServer", {
        body: createBody(new FormData(createForm)),
      });
      track(jobId, "CREATE_SERVER", `Create ${createForm.elements.name.value.trim()}`);
      createForm.reset();
      togglePanel(false);
    } catch (error) {
      showError(createAlert, error);
      createAlert.focus();
    } finally {
      button.disabled = false;
    }
  });

  // One dialog for the two actions on a server; its error line shows the API's answer.
  const dialogAlert = formAlert("dialog-error");
  const dialogBody = h("div", {});
  const dialogForm = h(
    "form",
    { method: "dialog", id: "action-form" },
    h("h2", { id: "dialog-title" }),
    dialogAlert,
    dialogBody,
    h(
      "div",
      { class: "form-actions" },
      h("button", { type: "submit", class: "button primary", id: "dialog-confirm" }),
      h(
        "button",
        { type: "button", class: "button ghost", id: "dialog-cancel", onclick: () => dialog.close() },
        "Cancel",
      ),
    ),
  );
  const dialog = h("dialog", { id: "action-dialog", "aria-labelledby": "dialog-title" }, dialogForm);
  let onConfirm = null;
  dialogForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    dialogAlert.replaceChildren();
    try {
      await onConfirm(new FormData(dialogForm));
      dialog.close();
    } catch (error) {
      showError(dialogAlert, error);
    }
  });
  function openDialog(title, confirmLabel, content, action) {
    dialogForm.querySelector("#dialog-title").textContent = title;
    dialogForm.querySelector("#dialog-confirm").textContent = confirmLabel;
    dialogForm.querySelector("#dialog-confirm").className =
      confirmLabel === "Delete" ? "button danger" : "button primary";
    dialogAlert.replaceChildren();
    dialogBody.replaceChildren(...content);
    onConfirm = action;
    // The list may have been redrawn meanwhile: give the focus back by the control's key.
    const opener = document.activeElement && document.activeElement.dataset.key;
    dialog.addEventListener(
      "close",
      () => {
        const again = opener && listBody.querySelector(`[data-key="${CSS.escape(opener)}"]`);
        if (again) again.focus();
      },
      { once: true },
    );
    dialog.showModal();
    (dialogBody.querySelector("input") || dialogForm.querySelector("#dialog-cancel")).focus();
  }
  const askDelete = (server) =>
    openDialog(
      `Delete ${server.name}?`,
      "Delete",
      [h("p", {}, "The server is deleted by a DELETE_SERVER task. This cannot be undone.")],
      async () => {
        const { job_id: jobId } = await call("BatchDeleteImageServer", { body: { items: [server.id] } });
        track(jobId, "DELETE_SERVER", `Delete ${server.name}`);
      },
    );
  const askImage = (server) =>
    openDialog(
      `Recreate an image from ${server.name}`,
      "Create image",
      [
        h(
          "label",
          { class: "field" },
          h("span", {}, "Image name"),
          h("input", { name: "image_name", id: "image-name" }),
        ),
        h(
          "label",
          { class: "field" },
          h("span", {}, "Description (optional)"),
          h("input", { name: "image_description", id: "image-description" }),
        ),
      ],
      async (data) => {
        const body = {
          name: data.get("image_name").trim(),
          description: data.get("image_description").trim(),
        };
        const { job_id: jobId } = await call("RecreateServerImage", { path: { server_id: server.id }, body });
        track(jobId, "CREATE_SERVER_IMAGE", `Image ${body.name} from ${server.name}`);
      },
    );

  const startedPanel = h("section", {
    id: "started-tasks",
    class: "card panel",
    hidden: true,
    "aria-labelledby": "started-title",
  });
  const listBody = h("div", { id: "servers-body" }, loading("image servers"));
  // Not a live region: announcing every refresh would drown a screen reader.
  const live = h("span", { class: "live muted small", id: "live" });
  main.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", { tabindex: "-1" }, "Image servers"),
      live,
      h(
        "button",
        {
          type: "button",
          class: "button primary",
          id: "open-create",
          "aria-expanded": "false",
          "aria-controls": "create-panel",
          onclick: () => togglePanel(createPanel.hidden),
        },
        "Create image server",
      ),
    ),
    createPanel,
    startedPanel,
    listBody,
    dialog,
  );

  function track(jobId, jobType, label) {
    started.unshift({ id: jobId, job_type: jobType, label, job: null });
    drawStarted();
    refresh();
  }

  function drawStarted() {
    startedPanel.hidden = !started.length;
    swap(
      startedPanel,
      h("h2", { id: "started-title" }, "Tasks started here"),
      h(
        "ul",
        { class: "started" },
        started.map((task) => {
          const status = task.job ? task.job.status : "WAITING";
          return h(
            "li",
            { dataset: { jobId: task.id, status } },
            h(
              "a",
              { href: `#/tasks/${task.id}`, class: "mono", dataset: { key: `started-${task.id}` } },
              task.id,
            ),
            h("span", {}, task.label),
            badge(status),
            task.job
              ? progress(doneOf(task.job, task.job), task.job.sub_jobs_total, status)
              : h("span", { class: "muted small" }, typeLabel(task.job_type)),
          );
        }),
      ),
    );
  }

  async function cycle() {
    let page;
    try {
      const pending = started.filter((t) => !t.job || ACTIVE.has(t.job.status));
      const [servers] = await Promise.all([
        call("ListImageServers", { query: { offset, limit } }),
        ...pending.map((t) =>
          call("ShowImageJob", { path: { job_id: t.id } }).then(
            (job) => (t.job = job),
            () => null,
          ),
        ),
      ]);
      page = servers;
    } catch (error) {
      if (isCurrent())
        swap(
          listBody,
          errorBox(error, () => refresh()),
        );
      return false;
    }
    if (!isCurrent()) return false;
    drawStarted();
    swap(listBody, drawList(page));
    live.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    return (
      page.items.some((s) => CHANGING.has(s.status)) ||
      started.some((t) => !t.job || ACTIVE.has(t.job.status))
    );
  }

  function drawList(page) {
    if (!page.items.length) {
      return offset
        ? empty("No image servers on this page.")
        : empty("No image servers yet. Create one to start a CREATE_SERVER task.");
    }
    const rows = page.items.map((server) =>
      h(
        "tr",
        { dataset: { serverId: server.id, status: server.status } },
        h(
          "td",
          { "data-label": "Name" },
          // One block: on a phone a cell lays its children out in a row beside its label.
          h(
            "div",
            { class: "stack" },
            h("strong", {}, server.name),
            h("div", { class: "mono muted small" }, server.id),
          ),
        ),
        h("td", { "data-label": "Status" }, badge(server.status)),
        h(
          "td",
          { "data-label": "Image" },
          h(
            "div",
            { class: "stack" },
            h("div", { class: "mono small" }, server.image_ref.id),
            server.image_id ? h("div", { class: "muted small" }, `Last built: ${server.image_id}`) : null,
          ),
        ),
        h("td", { "data-label": "Created" }, time(server.create_time)),
        h(
          "td",
          { "data-label": "Actions", class: "actions" },
          h(
            "button",
            {
              type: "button",
              class: "button small",
              onclick: () => askImage(server),
              dataset: { key: `image-${server.id}` },
              disabled: !["ACTIVE", "BUILT"].includes(server.status),
              "aria-label": `Recreate an image from ${server.name}`,
            },
            "Recreate image",
          ),
          h(
            "button",
            {
              type: "button",
              class: "button small danger",
              onclick: () => askDelete(server),
              dataset: { key: `delete-${server.id}` },
              disabled: server.status === "DELETING",
              "aria-label": `Delete ${server.name}`,
            },
            "Delete",
          ),
        ),
      ),
    );
    return h(
      "div",
      {},
      table({ id: "servers-table", headers: ["Server", "Status", "Image", "Created", "Actions"], rows }),
      pager({
        offset,
        limit,
        count: page.count,
        shown: page.items.length,
        go: (to) => navigate("/servers", to ? { offset: to } : undefined),
      }),
    );
  }

  const refresh = autoRefresh(cycle);
  drawStarted();
  refresh();
}
