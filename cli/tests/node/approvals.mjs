// Answers manual approvals with the official SDK's configureManualApproval,
// printing each request it was shown as one JSON line.
// Usage: node approvals.mjs URL API_KEY approve|deny
import { OneCLI } from "@onecli-sh/sdk";

const [url, apiKey, decision] = process.argv.slice(2);
const oc = new OneCLI({ url, apiKey });
oc.configureManualApproval(async (request) => {
  process.stdout.write(JSON.stringify(request) + "\n");
  return decision;
});
