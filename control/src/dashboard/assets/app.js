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
  document.querySelectorAll("[data-inject]").forEach((el) => {
    el.hidden = !generic || el.dataset.inject !== how.value;
  });
}
document.addEventListener("change", (event) => {
  if (event.target.matches("select[name=type], select[name=inject]")) syncInjection();
});
document.addEventListener("DOMContentLoaded", syncInjection);
