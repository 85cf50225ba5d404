// The `docker run` arguments the official SDK (2.2.1) gives an agent's
// container, printed as a JSON array for the container test to run.
// Usage: node container-args.mjs URL API_KEY AGENT
import { OneCLI } from "@onecli-sh/sdk";

const [url, apiKey, agent] = process.argv.slice(2);
const oc = new OneCLI({ url, apiKey });
await oc.ensureAgent({ name: `Agent ${agent}`, identifier: agent });
const args = [];
if (!(await oc.applyContainerConfig(args, { agent }))) {
  console.error("applyContainerConfig returned false");
  process.exit(1);
}
console.log(JSON.stringify(args));
