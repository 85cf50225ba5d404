// The dashboard in a real browser: Debian's Chromium driven by
// playwright-core. Signs in with a one-time link, walks every page, saves a
// connection through the connect page an agent's refusal links to, and
// checks that no secret value ever reaches the browser. Screenshots go to
// the folder given.
//
//   node dashboard.mjs SIGN_IN_LINK CONNECT_PATH SECRET_VALUE SCREENSHOT_DIR
//
// On /approvals it prints {"waiting":"approvals"} and waits for a held
// request to appear (the test sends one then). Its last line is the report:
// {"ok":true,"pages":[...]} or {"ok":false,"error":...}.
import { chromium } from "playwright-core";

const [link, connectPath, secret, shots, apiKey] = process.argv.slice(2);
const origin = new URL(link).origin;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const seen = []; // every response body the browser got
const pages = [];
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await context.newPage();
  page.on("response", async (response) => {
    try { seen.push({ url: response.url(), body: await response.text() }); } catch { /* redirects */ }
  });
  const shot = async (name) => {
    await page.screenshot({ path: `${shots}/dashboard-${name}.png`, fullPage: true });
    pages.push({ name, url: page.url(), title: await page.title() });
  };

  // Without a session: the sign-in page.
  await page.goto(`${origin}/connections`);
  if (!page.url().startsWith(`${origin}/sign-in`)) throw new Error(`no sign-in: ${page.url()}`);
  await shot("sign-in");

  // The one-time link signs in; the overview.
  await page.goto(link);
  if (new URL(page.url()).pathname !== "/") throw new Error(`link led to ${page.url()}`);
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await shot("overview");

  // The connect page, as an agent's credential_not_found links to it.
  await page.goto(`${origin}${connectPath}`);
  await page.getByRole("heading", { name: "Add a connection" }).waitFor();
  const host = await page.locator("input[name=host]").inputValue();
  if (host !== "api.test") throw new Error(`host not prefilled: ${host}`);
  await shot("connect");
  // Every field is labelled: found by its label, as a screen reader would.
  await page.getByLabel("Header name").fill("X-Api-Key");
  await page.getByLabel("Header value").fill("{value}");
  await page.getByLabel(/^Value/).fill(secret);
  await page.getByRole("button", { name: "Save connection" }).click();
  await page.getByText("can retry").waitFor();
  await shot("connections");

  // A held request appears without a reload; approving it lets it go.
  await page.goto(`${origin}/approvals`);
  await page.getByText("Nothing is waiting.").waitFor();
  await page.evaluate(() => { window.sameDocument = true; });
  console.log(JSON.stringify({ waiting: "approvals" }));
  const approve = page.getByRole("button", { name: "Approve" });
  await approve.waitFor({ timeout: 15000 });
  await page.getByText(/\d+ min \d+ s left|\d+ s left/).waitFor();
  if (!(await page.evaluate(() => window.sameDocument === true))) throw new Error("the page reloaded");
  await shot("approvals");
  await approve.click();
  await page.getByText("Nothing is waiting.").waitFor();

  // The activity view shows the approval, and live mode follows new records.
  await page.goto(`${origin}/activity`);
  await page.getByRole("cell", { name: "approved" }).first().waitFor();
  await shot("activity");
  await page.goto(`${origin}/activity?outcome=approved`);
  if (await page.getByRole("cell", { name: "credential_not_found" }).count()) throw new Error("filter ignored");
  await page.goto(`${origin}/activity`);
  await page.getByLabel("Live").check();
  await page.evaluate(() => { window.sameDocument = true; });
  console.log(JSON.stringify({ waiting: "activity" }));
  await page.getByText("api.test/live-probe").waitFor({ timeout: 15000 });
  if (!(await page.evaluate(() => window.sameDocument === true))) throw new Error("the page reloaded");

  // A block rule and an agent, made in the forms.
  await page.goto(`${origin}/rules`);
  const ruleForm = page.locator("form[action='/rules']");
  await ruleForm.getByLabel("Name").fill("no blocked paths");
  await ruleForm.getByLabel("Action").selectOption("block");
  await ruleForm.getByLabel(/^Host/).fill("api.test");
  await ruleForm.getByLabel(/^Path/).fill("/blocked/*");
  await page.getByRole("button", { name: "Create rule" }).click();
  await page.getByRole("cell", { name: "no blocked paths", exact: true }).waitFor();
  await shot("rules");
  await page.goto(`${origin}/agents`);
  const agentForm = page.locator("form[action='/agents']");
  await agentForm.getByLabel("Name").fill("UI agent");
  await agentForm.getByLabel(/^Identifier/).fill("ui-agent");
  await page.getByRole("button", { name: "Create agent" }).click();
  await page.getByRole("cell", { name: "ui-agent", exact: true }).waitFor();
  // A proxy token is shown only on request.
  const masked = page.locator("[data-token-of]").first();
  if (!(await masked.textContent()).includes("••")) throw new Error("a token in the page");
  await page.getByRole("button", { name: "Reveal" }).first().click();
  await page.waitForFunction(() => document.querySelector("[data-token-of]")?.textContent.startsWith("aoc_") &&
    !document.querySelector("[data-token-of]").textContent.includes("•"));
  await shot("agents");
  await page.goto(`${origin}/settings`);
  await page.getByRole("heading", { name: "Settings" }).waitFor();
  await shot("settings");

  // Keyboard only: Tab reaches the navigation links in order.
  await page.goto(`${origin}/`);
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.textContent?.trim());
  if (!focused?.startsWith("Overview")) throw new Error(`first tab stop: ${focused}`);

  // Sign out, and the session is gone.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(`${origin}/sign-in`);
  await page.goto(`${origin}/agents`);
  if (!page.url().startsWith(`${origin}/sign-in`)) throw new Error("signed out, still in");
  // Back in with the API key, to where it was going; a wrong key is refused.
  await page.getByLabel(/^API key/).fill("oc_wrong");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").waitFor();
  await page.getByLabel(/^API key/).fill(apiKey);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Agents" }).waitFor();

  const leaked = seen.filter((r) => r.body.includes(secret)).map((r) => r.url);
  if (leaked.length) throw new Error(`the secret reached the browser: ${leaked.join(", ")}`);
  console.log(JSON.stringify({ ok: true, pages, responses: seen.length }));
} catch (error) {
  const where = page ? { url: page.url(), text: (await page.textContent("main").catch(() => ""))?.slice(0, 500) } : {};
  if (page) await page.screenshot({ path: `${shots}/dashboard-failure.png`, fullPage: true }).catch(() => {});
  console.log(JSON.stringify({ ok: false, error: String(error?.message || error), where, pages }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
