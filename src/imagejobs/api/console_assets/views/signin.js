// Sign-in: account, user and password through the IAM token API, or a pasted token.

import { signInWithPassword, signInWithToken } from "../api.js";
import { h } from "../dom.js";

function field(label, attributes) {
  return h("label", { class: "field" }, h("span", {}, label), h("input", attributes));
}

// The last account, user and project signed in with (never the password), to prefill.
const REMEMBERED = "imagejobs.console.last-sign-in";

function remembered() {
  try {
    return JSON.parse(localStorage.getItem(REMEMBERED)) || {};
  } catch {
    return {};
  }
}

export function renderSignIn({ main, navigate }, params, notice) {
  document.title = "Sign in · imagejobs console";
  const alert = h("div", { class: "form-error", role: "alert", id: "signin-error" });
  const showError = (error) => {
    const message = h("span", { class: "error-message" }, error.message);
    if (error.code) alert.replaceChildren(h("strong", { class: "error-code" }, error.code), " ", message);
    else alert.replaceChildren(message); // the form's own check: no API code
  };
  const done = () => navigate(params.get("next") || "/tasks");

  // The form's own check of its required fields (the browser's is off: its bubble left
  // the previous attempt's error on the page): says which ones are empty, marks them, and
  // gives the first the focus. A password counts as given if it has any character.
  const missingFields = (form) => {
    const missing = [];
    for (const input of form.querySelectorAll("[required]")) {
      const empty = input.type === "password" ? input.value === "" : input.value.trim() === "";
      input.setAttribute("aria-invalid", String(empty));
      if (empty) missing.push(input);
    }
    return missing;
  };
  const describe = (inputs) => {
    const names = inputs.map((input) => input.dataset.what);
    const listed = names.length > 1 ? `${names.slice(0, -1).join(", ")} and ${names.at(-1)}` : names[0];
    return `Enter ${listed}.`;
  };

  const submitWith = (form, action) => async (event) => {
    event.preventDefault();
    const missing = missingFields(form);
    if (missing.length) {
      showError({ message: describe(missing) });
      missing[0].focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = "Signing in…";
    alert.replaceChildren();
    try {
      await action(new FormData(form));
      done();
    } catch (error) {
      showError(error);
      button.disabled = false;
      button.textContent = "Sign in";
    }
  };

  const last = remembered();
  const passwordForm = h(
    "form",
    { id: "password-form", class: "stack", novalidate: true },
    field("Account", {
      name: "account",
      id: "account",
      required: true,
      "aria-describedby": "signin-error",
      dataset: { what: "the account" },
      autocomplete: "organization",
      value: last.account,
    }),
    field("User name", {
      name: "user",
      id: "user",
      required: true,
      "aria-describedby": "signin-error",
      dataset: { what: "the user name" },
      autocomplete: "username",
      value: last.user,
    }),
    field("Password", {
      name: "password",
      id: "password",
      type: "password",
      required: true,
      "aria-describedby": "signin-error",
      dataset: { what: "the password" },
      autocomplete: "current-password",
    }),
    field("Project (name or ID, optional)", {
      name: "project",
      id: "project",
      placeholder: "the account's first project",
      value: last.project,
    }),
    h("button", { type: "submit", class: "button primary" }, "Sign in"),
  );
  passwordForm.addEventListener(
    "submit",
    submitWith(passwordForm, async (data) => {
      const account = data.get("account").trim();
      const user = data.get("user").trim();
      const signedIn = await signInWithPassword({
        account,
        user,
        password: data.get("password"),
        project: data.get("project").trim(),
      });
      localStorage.setItem(REMEMBERED, JSON.stringify({ account, user, project: signedIn.projectName }));
    }),
  );

  const tokenForm = h(
    "form",
    { id: "token-form", class: "stack", novalidate: true },
    h(
      "label",
      { class: "field" },
      h("span", {}, "IAM token (X-Auth-Token, project-scoped)"),
      h("textarea", {
        name: "token",
        id: "token",
        required: true,
        rows: 4,
        spellcheck: "false",
        "aria-describedby": "signin-error",
        dataset: { what: "a token" },
      }),
    ),
    h("button", { type: "submit", class: "button primary" }, "Sign in"),
  );
  tokenForm.addEventListener(
    "submit",
    submitWith(tokenForm, (data) => signInWithToken(data.get("token").trim())),
  );

  main.append(
    h(
      "section",
      { class: "signin card", "aria-labelledby": "signin-title" },
      h("div", { class: "brand big" }, h("span", { class: "logo", "aria-hidden": "true" }), "imagejobs"),
      h("h1", { id: "signin-title" }, "Sign in to the console"),
      notice ? h("p", { class: "notice", role: "status", id: "signin-notice" }, notice) : null,
      alert,
      passwordForm,
      h("details", { class: "token-signin" }, h("summary", {}, "Sign in with a token instead"), tokenForm),
      h("p", { class: "muted small" }, "What you may see and do follows your IAM policies."),
    ),
  );
  const first = [...passwordForm.querySelectorAll("input")].find((input) => !input.value);
  (first || main.querySelector("#account")).focus();
}
