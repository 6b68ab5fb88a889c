// The console's shell: hash routes (so every view, filters included, is a shareable URL),
// the header, sign-in guard, and one refresh loop per view.

import { session, signOut, whenSessionEnds } from "./api.js";
import { h } from "./dom.js";
import { renderSignIn } from "./views/signin.js";
import { renderTasks } from "./views/tasks.js";
import { renderTask } from "./views/task.js";
import { renderServers } from "./views/servers.js";

export const REFRESH_MS = 2000;
const main = document.getElementById("main");
const top = document.getElementById("top");
let generation = 0;
let signInNotice = "";

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/tasks";
  const [path, search = ""] = raw.split("?");
  return { path, params: new URLSearchParams(search) };
}

export function navigate(path, params) {
  const search = params ? new URLSearchParams(params).toString() : "";
  location.hash = search ? `${path}?${search}` : path;
}

// What a view gets: where to draw, and a way to refresh itself while the view is shown.
function viewContext(current) {
  return {
    main,
    navigate,
    isCurrent: () => current === generation,
    // Wraps a view's `cycle` (load and draw; true while something shown may still change)
    // into `refresh()`: it runs `cycle` now and, while that returns true and the view is
    // shown, again REFRESH_MS after each run ends. One loop at most; runs never overlap.
    autoRefresh(cycle) {
      let looping = false;
      const shown = () => current === generation;
      const loop = async () => {
        let again = false;
        try {
          again = shown() && (await cycle());
        } catch {
          again = true; // the view shows the error; try again next time
        }
        looping = again && shown();
        if (looping) setTimeout(loop, REFRESH_MS);
      };
      return async () => {
        const again = await cycle();
        if (again && !looping && shown()) {
          looping = true;
          setTimeout(loop, REFRESH_MS);
        }
      };
    },
  };
}

function renderHeader(path) {
  const current = session();
  top.hidden = !current;
  if (!current) return;
  const link = (href, label, active) =>
    h(
      "a",
      { href, class: active ? "nav-link active" : "nav-link", "aria-current": active ? "page" : null },
      label,
    );
  top.replaceChildren(
    h(
      "a",
      { class: "brand", href: "#/tasks" },
      h("span", { class: "logo", "aria-hidden": "true" }),
      "imagejobs",
    ),
    h(
      "nav",
      { "aria-label": "Main" },
      link("#/tasks", "Tasks", path.startsWith("/tasks")),
      link("#/servers", "Image servers", path.startsWith("/servers")),
    ),
    h(
      "div",
      { class: "who" },
      h(
        "span",
        { class: "who-user", title: `Token expires ${current.expiresAt}` },
        `${current.user} @ ${current.account}`,
      ),
      h("span", { class: "who-project", title: current.projectId }, current.projectName),
      h("button", { type: "button", class: "button ghost", id: "sign-out", onclick: onSignOut }, "Sign out"),
    ),
  );
}

async function onSignOut() {
  await signOut();
  signInNotice = "You are signed out.";
  navigate("/signin");
}

function route() {
  generation += 1;
  const { path, params } = parseHash();
  const context = viewContext(generation);
  if (!session() && path !== "/signin") {
    const back = location.hash.replace(/^#/, "");
    navigate("/signin", back && back !== "/signin" ? { next: back } : undefined);
    return;
  }
  renderHeader(path);
  main.replaceChildren();
  if (path === "/signin") {
    if (session()) return navigate(params.get("next") || "/tasks");
    renderSignIn(context, params, signInNotice);
    signInNotice = "";
  } else if (path === "/tasks") {
    renderTasks(context, params);
  } else if (path.startsWith("/tasks/")) {
    renderTask(context, decodeURIComponent(path.slice("/tasks/".length)));
  } else if (path === "/servers") {
    renderServers(context, params);
  } else {
    document.title = "Not found · imagejobs console";
    main.append(
      h("h1", { tabindex: "-1" }, "Not found"),
      h("p", {}, h("a", { href: "#/tasks" }, "Go to the task list")),
    );
  }
  // The link that led here is gone: start the keyboard (and a screen reader) at the title.
  if (document.activeElement === document.body) main.querySelector("h1")?.focus({ preventScroll: true });
}

// The service's 401 messages are IAM's own ("Incorrect IAM authentication information:
// decrypt token fail", "...: token expires, expires_at: ..."): written for SDKs, not
// people. Say what happened in words.
function whySessionEnded(message) {
  if (message.includes("token expires")) return "your sign-in expired.";
  if (message.endsWith("decrypt token fail")) return "your sign-in was revoked or is no longer known here.";
  return /[.!?]$/.test(message) ? message : `${message}.`;
}

whenSessionEnds((error) => {
  signInNotice = `Your session has ended: ${whySessionEnded(error.message)} Please sign in again.`;
  const back = location.hash.replace(/^#/, "");
  navigate("/signin", { next: back });
});

window.addEventListener("hashchange", route);
route();
