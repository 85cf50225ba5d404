// Runs inside an agent container: Node's fetch through the proxy in
// HTTPS_PROXY (Node 20 needs undici's EnvHttpProxyAgent for that), trusting
// NODE_EXTRA_CA_CERTS. Prints the origin's echo.
// Usage: node agent-clients.mjs URL
import { EnvHttpProxyAgent, setGlobalDispatcher } from "undici";

setGlobalDispatcher(new EnvHttpProxyAgent());
const response = await fetch(process.argv[2], { headers: { "x-api-key": "placeholder" } });
console.log(await response.text());
