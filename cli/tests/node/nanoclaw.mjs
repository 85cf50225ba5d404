// What NanoClaw does with the SDK it pins (0.5.0) when it starts a group's
// container: ensureAgent, then applyContainerConfig without the host
// mapping (it adds its own). Prints what it saw as JSON for the Rust test.
// Usage: node nanoclaw.mjs URL API_KEY GROUP_ID
import { OneCLI, OneCLIRequestError } from "sdk-0.5";

const [url, apiKey, group] = process.argv.slice(2);
const oc = new OneCLI({ url, apiKey });
const out = {};
const identity = { name: `NanoClaw ${group}`, identifier: group };
out.ensureNew = await oc.ensureAgent(identity);
out.ensureAgain = await oc.ensureAgent(identity);
const args = ["run", "--rm"];
out.applied = await oc.applyContainerConfig(args, { addHostMapping: false, agent: group });
out.args = args;
out.config = await oc.getContainerConfig(group);
out.configDefault = await oc.getContainerConfig();
try {
  await oc.getContainerConfig("ghost");
  out.ghost = "no error";
} catch (e) {
  out.ghost = { requestError: e instanceof OneCLIRequestError, statusCode: e.statusCode };
}
// 0.5.0 degrades on every failure: an unknown agent gives false, not a throw.
out.applyGhost = await oc.applyContainerConfig([], { agent: "ghost" });
out.skill = await oc.getGatewaySkill();
console.log(JSON.stringify(out));
