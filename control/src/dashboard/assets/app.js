// OneCLI dashboard: the few things a page does on its own. No inline
// scripts (the Content-Security-Policy allows only this file).
"use strict";

// Copy buttons: <button data-copy="#id"> copies that element's text.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});

// The secret form: header fields for a header injection, parameter fields
// for a query one; only generic secrets choose.
function syncInjection() {
  const type = document.querySelector("select[name=type]");
  const how = document.querySelector("select[name=inject]");
  if (!type || !how) return;
  const generic = type.value === "generic";
  document.querySelectorAll("[data-generic]").forEach((el) => { el.hidden = !generic; });
  document.querySelectorAll("[data-aws]").forEach((el) => { el.hidden = type.value !== "aws"; });
  document.querySelectorAll("[data-inject]").forEach((el) => {
    el.hidden = !generic || el.dataset.inject !== how.value;
  });
}
document.addEventListener("change", (event) => {
  if (event.target.matches("select[name=type], select[name=inject]")) syncInjection();
});
document.addEventListener("DOMContentLoaded", syncInjection);

// Approvals, live: the list on /approvals redraws from /approvals/feed, and
// the badge in the navigation follows the count, on every page.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) {
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function decisionForm(id, verb, label, csrf, quiet) {
  const form = el("form", { method: "post", action: `/approvals/${encodeURIComponent(id)}/${verb}`, class: "inline" },
    el("input", { type: "hidden", name: "csrf", value: csrf }));
  const button = el("button", { type: "submit" }, label);
  if (quiet) button.className = "quiet";
  form.append(button);
  return form;
}

function card(request, csrf) {
  const article = el("article", { class: "panel approval", "data-id": request.id },
    el("h2", {}, el("code", {}, `${request.method} ${request.host}${request.path}`)),
    el("p", { class: "muted" }, "From ", el("strong", {}, request.agent?.name || ""), " · ",
      el("time", { datetime: request.expiresAt || "", "data-left": "" }, "")));
  const headers = Object.entries(request.headers || {});
  if (headers.length) {
    article.append(el("details", {}, el("summary", {}, `Headers (${headers.length})`),
      el("pre", {}, headers.map(([k, v]) => `${k}: ${v}\n`).join(""))));
  }
  if (request.bodyPreview) {
    article.append(el("details", {}, el("summary", {}, "Body"), el("pre", {}, request.bodyPreview)));
  }
  article.append(decisionForm(request.id, "approve", "Approve", csrf, false),
    decisionForm(request.id, "deny", "Deny", csrf, true));
  return article;
}

let shownIds = null;
async function refreshApprovals() {
  const list = document.getElementById("approvals");
  const badge = document.getElementById("pending-badge");
  if (!list && !badge) return;
  try {
    const response = await fetch("/approvals/feed", { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) return;
    const { requests } = await response.json();
    if (badge) {
      badge.textContent = String(requests.length);
      badge.hidden = requests.length === 0;
    }
    if (!list) return;
    const ids = requests.map((r) => r.id).join(",");
    if (ids === shownIds) return;
    shownIds = ids;
    const csrf = list.dataset.csrf;
    list.replaceChildren(...(requests.length
      ? requests.map((r) => card(r, csrf))
      : [el("div", { class: "empty" }, "Nothing is waiting.")]));
    tickTimeLeft();
  } catch { /* the next tick tries again */ }
}
document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("approvals");
  if (list) shownIds = [...list.querySelectorAll("[data-id]")].map((n) => n.dataset.id).join(",");
  setInterval(refreshApprovals, list ? 750 : 3000);
});

// Activity, live: with "Live" ticked the table redraws from /activity/feed
// (the same filters) every two seconds.
function activityRow(r) {
  const rule = r.rule_id && r.rule_name
    ? el("a", { href: `/rules#rule-${encodeURIComponent(r.rule_id)}` }, r.rule_name)
    : el("span", { class: "muted" }, "–");
  return el("tr", {},
    el("td", {}, r.time), el("td", {}, el("code", {}, r.agent)),
    el("td", {}, el("code", {}, `${r.method} ${r.host}${r.path}`)),
    el("td", {}, r.outcome), el("td", {}, String(r.status)), el("td", {}, rule));
}
async function refreshActivity() {
  const live = document.getElementById("live");
  const body = document.querySelector("#activity tbody");
  if (!live || !live.checked || !body) return;
  try {
    const response = await fetch(`/activity/feed${location.search}`, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) return;
    const records = await response.json();
    body.replaceChildren(...(records.length ? records.map(activityRow)
      : [el("tr", {}, el("td", { colspan: "6" }, el("div", { class: "empty" }, "Nothing yet.")))]));
  } catch { /* the next tick tries again */ }
}
document.addEventListener("DOMContentLoaded", () => {
  if (document.getElementById("live")) setInterval(refreshActivity, 2000);
});

// Reveal a proxy token on request only: it is fetched, never in the page.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-reveal]");
  if (!button) return;
  const id = button.dataset.reveal;
  const target = document.querySelector(`[data-token-of="${CSS.escape(id)}"]`);
  const response = await fetch(`/agents/${encodeURIComponent(id)}/token`, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok || !target) return;
  target.textContent = (await response.json()).token;
  button.hidden = true;
});

// "N s left" for every held request, updated each second.
function tickTimeLeft() {
  for (const node of document.querySelectorAll("time[data-left]")) {
    const left = Math.max(0, Math.round((Date.parse(node.getAttribute("datetime")) - Date.now()) / 1000));
    node.textContent = left >= 60 ? `${Math.floor(left / 60)} min ${left % 60} s left` : `${left} s left`;
  }
}
document.addEventListener("DOMContentLoaded", () => { tickTimeLeft(); setInterval(tickTimeLeft, 1000); });
