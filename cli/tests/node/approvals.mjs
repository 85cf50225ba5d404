// Answers manual approvals with the official SDK's configureManualApproval,
// printing each request it was shown as one JSON line.
// Usage: node approvals.mjs URL API_KEY approve|deny [PACKAGE]
// PACKAGE: the SDK to use, "@onecli-sh/sdk" (2.2.1) by default, or
// "sdk-0.5" (0.5.0, NanoClaw's pin).
const [url, apiKey, decision, pkg = "@onecli-sh/sdk"] = process.argv.slice(2);
const { OneCLI } = await import(pkg);
const oc = new OneCLI({ url, apiKey });
oc.configureManualApproval(async (request) => {
  process.stdout.write(JSON.stringify(request) + "\n");
  return decision;
});
