// Drives onecli serve with the official, unmodified @onecli-sh/sdk and
// prints what it saw as JSON for the Rust test to check.
// Usage: node sdk.mjs URL API_KEY
import { OneCLI, OneCLIRequestError } from "@onecli-sh/sdk";

const [url, apiKey] = process.argv.slice(2);
// projectId makes the SDK send X-Project-Id, which must be accepted.
const oc = new OneCLI({ url, apiKey, projectId: "project-1" });
const out = {};

out.created = await oc.createAgent({ name: "SDK Agent", identifier: "sdk-agent" });
out.ensureExisting = await oc.ensureAgent({ name: "SDK Agent", identifier: "sdk-agent" });
out.ensureNew = await oc.ensureAgent({ name: "Second", identifier: "second", parentIdentifier: "sdk-agent" });
out.configDefault = await oc.getContainerConfig();
out.configAgent = await oc.getContainerConfig({ agent: "sdk-agent" });
const args = ["run", "--rm"];
out.applied = await oc.applyContainerConfig(args, { agent: "sdk-agent" });
out.args = args;
try {
  await oc.getContainerConfig({ agent: "ghost" });
  out.ghost = "no error";
} catch (e) {
  out.ghost = { requestError: e instanceof OneCLIRequestError, statusCode: e.statusCode };
}
try {
  await oc.applyContainerConfig([], { agent: "ghost" });
  out.applyGhost = "no error";
} catch (e) {
  out.applyGhost = { requestError: e instanceof OneCLIRequestError, statusCode: e.statusCode };
}
out.skill = await oc.getGatewaySkill();
const unreachable = new OneCLI({ url: "http://127.0.0.1:9", apiKey });
out.applyUnreachable = await unreachable.applyContainerConfig([]);
console.log(JSON.stringify(out));
