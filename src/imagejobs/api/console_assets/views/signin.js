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
    alert.replaceChildren(
      h("strong", { class: "error-code" }, error.code),
      " ",
      h("span", { class: "error-message" }, error.message),
    );
  };
  const done = () => navigate(params.get("next") || "/tasks");

  const submitWith = (form, action) => async (event) => {
    event.preventDefault();
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
    { id: "password-form", class: "stack" },
    field("Account", {
      name: "account",
      id: "account",
      required: true,
      autocomplete: "organization",
      value: last.account,
    }),
    field("User name", {
      name: "user",
      id: "user",
      required: true,
      autocomplete: "username",
      value: last.user,
    }),
    field("Password", {
      name: "password",
      id: "password",
      type: "password",
      required: true,
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
      const user = data.get("user").trim() || account;
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
    { id: "token-form", class: "stack" },
    h(
      "label",
      { class: "field" },
      h("span", {}, "IAM token (X-Auth-Token, project-scoped)"),
      h("textarea", { name: "token", id: "token", required: true, rows: 4, spellcheck: "false" }),
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
