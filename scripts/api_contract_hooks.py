"""Schemathesis hooks for scripts/api-contract (loaded through the config's `hooks`).

* `before_call` keeps the run bounded and meaningful: long polls are asked
  not to wait, and path ids / X-Project-Id are often replaced by the objects
  scripts/api-contract seeded, so that GET/PATCH/DELETE reach real records
  and not only 404s. The choice is a hash of the generated value, so a
  replayed or shrunk case makes the same request.
* Two checks: no seeded secret value (nor any part of the Codex auth.json
  secret) ever appears in a response, and a secret value a request sends
  is never echoed back.

The seed is a JSON file named by API_CONTRACT_SEED.
"""

from __future__ import annotations

import json
import os
import zlib

import schemathesis

with open(os.environ["API_CONTRACT_SEED"], encoding="utf-8") as f:
    SEED = json.load(f)


def _needles(values: list[str]) -> list[bytes]:
    """Every spelling a value could take in a body: raw and JSON-escaped."""
    out: set[bytes] = set()
    for v in values:
        out.add(v.encode())
        out.add(json.dumps(v)[1:-1].encode())
        out.add(json.dumps(v, ensure_ascii=False)[1:-1].encode())
    return sorted(out)


SECRET_NEEDLES = _needles(SEED["secretValues"])

# Path template -> seed key of the id to use.
_KEEP = {
    "/v1/agents/{id}": "agent",
    "/v1/agents/{id}/regenerate-token": "agent",
    "/v1/agents/{id}/secret-mode": "agent",
    "/v1/agents/{id}/policy-mode": "agent",
    "/v1/agents/{id}/secrets": "agent",
    "/v1/secrets/{id}": "secret",
    "/v1/rules/{id}": "rule",
    "/v1/projects/{key}": "project",
    "/v1/approvals/{id}/decision": "approval",
    "/v1/gateway/approvals/{id}": "approvalPoll",
}
# DELETE (for real) goes to objects seeded to be deleted.
_DELETE = {
    "/v1/agents/{id}": "agentVictim",
    "/v1/secrets/{id}": "secretVictim",
    "/v1/rules/{id}": "ruleVictim",
    "/v1/projects/{key}": "projectVictim",
    "/v1/api-keys/{id}": "apiKeyVictim",
    "/v1/gateway/approvals/{id}": "approvalWithdraw",
}
# Dry runs change nothing: they may hit the kept objects (and a pending approval).
_DRY = {"/v1/approvals/{id}/decision": "approvalDry", "/v1/api-keys/{id}": "apiKey"}


def _pick(value: object) -> bool:
    """Two cases out of three use a seeded object."""
    return zlib.crc32(repr(value).encode()) % 3 != 0


def _seed_for(method: str, path: str) -> str | None:
    if path.startswith("/v1/dry-run/"):
        real = "/v1/" + path[len("/v1/dry-run/") :]
        return _DRY.get(real) or _KEEP.get(real)
    if method == "DELETE" and path in _DELETE:
        return _DELETE[path]
    return _KEEP.get(path)


@schemathesis.hook
def before_call(context, case, kwargs):
    # Generated containers may be shared between cases: replace, never edit.
    path = case.operation.path
    method = case.method.upper()
    query = dict(case.query or {})
    # Long polls: never wait (30 s and 25 s otherwise).
    if path in ("/v1/approvals/pending", "/v1/gateway/approvals/{id}") and method == "GET":
        query["wait"] = 0
    if path == "/v1/gateway/policy":
        # A version the server has passed: answered at once.
        query["after"] = 0
    if query != (case.query or {}):
        case.query = query
    key = _seed_for(method, path)
    params = case.path_parameters or {}
    name = "key" if "{key}" in path else "id"
    if key and name in params and _pick(params[name]):
        case.path_parameters = {**params, name: SEED[key]}
    headers = case.headers or {}
    header = next((h for h in headers if h.lower() == "x-project-id"), None)
    if header is not None:
        # One case in four keeps the generated project (an unknown one: 404),
        # one acts in the seeded second project, two in the default one.
        choice = zlib.crc32(repr((headers[header], case.body, case.path_parameters)).encode()) % 4
        if choice:
            new_headers = headers.copy()
            new_headers[header] = SEED["project"] if choice == 1 else "default"
            case.headers = new_headers


def _body_text(response) -> bytes:
    head = b"\n".join(
        f"{k}: {v}".encode("utf-8", "replace")
        for k, values in response.headers.items()
        for v in (values if isinstance(values, list) else [values])
    )
    return head + b"\n\n" + (response.content or b"")


@schemathesis.check
def no_seeded_secret_in_response(ctx, response, case):
    """No seeded secret value (or part of one) in any response, headers included."""
    text = _body_text(response)
    for needle in SECRET_NEEDLES:
        if needle and needle in text:
            raise AssertionError(
                f"a seeded secret value ({len(needle)} bytes) "
                f"is in the response to {case.method} {case.formatted_path}"
            )


def _sent_secrets(body: dict) -> list[str]:
    """The write-only strings a secrets request carries: its value and an AWS session token."""
    sent = [body.get("value")]
    config = body.get("injectionConfig")
    if isinstance(config, dict):
        sent.append(config.get("sessionToken"))
    return [v for v in sent if isinstance(v, str) and len(v) >= 12]


@schemathesis.check
def no_secret_value_echoed(ctx, response, case):
    """A secret value (or session token) sent to /secrets is not in the answer,
    unless the request also sent it as another field's text (a name, say)."""
    if "/secrets" not in case.operation.path or not isinstance(case.body, dict):
        return
    text = _body_text(response)
    for value in _sent_secrets(case.body):
        others = dict(case.body)
        others.pop("value", None)
        if isinstance(others.get("injectionConfig"), dict):
            others["injectionConfig"] = {
                k: v for k, v in others["injectionConfig"].items() if k != "sessionToken"
            }
        if value in json.dumps(others, ensure_ascii=False) or value in json.dumps(others):
            continue
        for needle in _needles([value]):
            if needle in text:
                raise AssertionError(
                    f"a write-only secret sent is echoed in the response to {case.method} {case.formatted_path}"
                )
