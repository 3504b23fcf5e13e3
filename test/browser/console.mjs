// End-to-end tests of the web console in headless Chromium, run by
// browser_test.go against a real hub with simulated devices. Environment:
// BASE_URL, ADMIN_TOKEN, VIEWER_TOKEN, DEVICE_ID, OUT_DIR, CHROMIUM.
// Prints one JSON line per page load ({"timing": ...}) and exits non-zero
// on the first failed check.
import { chromium } from "playwright-core";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const base = env("BASE_URL"), admin = env("ADMIN_TOKEN"), viewerTok = env("VIEWER_TOKEN"), device = env("DEVICE_ID");
const out = env("OUT_DIR");
mkdirSync(out, { recursive: true });

const profile = mkdtempSync(join(tmpdir(), "sf-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1024, height: 800 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

function check(cond, msg) { if (!cond) throw new Error("check failed: " + msg); }

async function timedGoto(page, path) {
  const t0 = Date.now();
  const resp = await page.goto(base + path, { waitUntil: "load" });
  const nav = await page.evaluate(() => { const e = performance.getEntriesByType("navigation")[0]; return { ttfb: e.responseStart - e.requestStart, load: e.loadEventEnd - e.startTime }; });
  console.log(JSON.stringify({ timing: path, status: resp.status(), serverMs: Math.round(nav.ttfb), loadMs: Math.round(nav.load), wallMs: Date.now() - t0 }));
  return resp;
}

async function shot(page, name) { await page.screenshot({ path: join(out, name + ".png"), fullPage: true }); }

async function signIn(page, token) {
  await timedGoto(page, "/login");
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(base + "/");
}

const failures = [];
async function test(name, fn) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  try {
    await fn(page);
    check(errors.length === 0, "JavaScript errors: " + errors.join("; "));
    console.log(`ok   ${name}`);
  } catch (e) {
    failures.push(name);
    console.log(`FAIL ${name}: ${e.stack || e}`);
    await shot(page, "fail-" + name).catch(() => {});
  } finally {
    await page.close();
  }
}

await test("sign-in", async (page) => {
  await timedGoto(page, "/devices");
  check(page.url().startsWith(base + "/login"), "an anonymous visit goes to sign-in, got " + page.url());
  await shot(page, "01-login");
  await page.getByLabel("API token").fill("sft_not-a-real-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").waitFor();
  check((await page.getByRole("alert").innerText()).includes("not valid"), "a wrong token is refused with a message");
  await signIn(page, admin);
  await page.getByRole("heading", { name: "Fleet overview" }).waitFor();
});

await test("fleet-overview-live", async (page) => {
  await timedGoto(page, "/");
  const fleet = page.locator("#fleet");
  const first = await fleet.getAttribute("data-updated");
  // htmx polls /fragments/fleet; the connected count and the rate come from the gateway.
  await page.waitForFunction((t) => { const f = document.querySelector("#fleet"); return f && f.dataset.updated !== t; }, first, { timeout: 15000 });
  await page.waitForFunction(() => +document.querySelector('[data-testid="connected"]').textContent > 0, null, { timeout: 20000 });
  await page.waitForFunction(() => parseFloat(document.querySelector('[data-testid="rate"]').textContent) > 0, null, { timeout: 20000 });
  await page.waitForFunction(() => document.querySelectorAll(".spark polyline").length > 0, null, { timeout: 15000 });
  await shot(page, "02-overview");
  await page.emulateMedia({ colorScheme: "dark" });
  await shot(page, "02-overview-dark");
  await page.emulateMedia({ colorScheme: "light" });
  // Keyboard: the first Tab reaches the skip link, which is visible when focused.
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => ({ text: document.activeElement.textContent, left: document.activeElement.getBoundingClientRect().left }));
  check(focused.text.includes("Skip to content") && focused.left >= 0, "the skip link takes the first Tab and is visible: " + JSON.stringify(focused));
  await page.keyboard.press("Tab");
  await shot(page, "03-keyboard-focus");
});

await test("devices-filter", async (page) => {
  await timedGoto(page, "/devices");
  await page.getByLabel("State").selectOption("connected");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/state=connected/);
  const rows = await page.locator('[data-testid="devices"] tbody tr').count();
  check(rows >= 1 && (await page.locator('[data-testid="devices"] .pill.on').count()) === rows, "the connected filter lists only connected devices");
  await shot(page, "04-devices-connected");
  await timedGoto(page, "/devices?site=bulk");
  check(await page.getByRole("link", { name: "Next page" }).count() === 1, "10,000 bulk devices are paged");
  await page.getByRole("link", { name: "Next page" }).click();
  await page.waitForURL(/after=/);
  await shot(page, "05-devices-page2");
});

await test("device-detail-live-chart", async (page) => {
  await timedGoto(page, "/devices/" + device);
  await page.locator(".chart").first().waitFor({ timeout: 10000 });
  // New points arrive over Server-Sent Events and are appended to the chart.
  await page.waitForFunction(() => [...document.querySelectorAll(".chart")].some((c) => +(c.dataset.livePoints || 0) >= 2), null, { timeout: 20000 });
  check(await page.locator(".chart canvas").count() > 0, "uPlot drew a canvas");
  await shot(page, "06-device-detail");
  await timedGoto(page, "/devices/" + device + "?range=1h");
  check(await page.locator('.ranges a[aria-current="true"]').innerText() === "1h", "the range picker marks 1h");
  await page.getByRole("button", { name: "Show connection string" }).click();
  const cs = await page.getByTestId("connection-string").inputValue();
  check(cs.includes("DeviceId=" + device) && cs.includes("SharedAccessKey="), "the connection string is shown once: " + cs);
  await shot(page, "07-device-connection-string");
});

await test("viewer-refused", async (page) => {
  await page.context().clearCookies();
  await signIn(page, viewerTok);
  await timedGoto(page, "/devices");
  check(await page.getByRole("button", { name: "Apply" }).count() === 0, "a viewer sees no bulk actions");
  await timedGoto(page, "/devices/" + device);
  check(await page.getByRole("button", { name: "Rotate primary key" }).count() === 0, "a viewer sees no key rotation");
  // The server refuses the write even when the form is forged.
  const status = await page.evaluate(async (id) => {
    const csrf = document.querySelector('input[name="csrf"]').value;
    const r = await fetch("/devices/" + id + "/keys/primary/rotate", { method: "POST", body: new URLSearchParams({ csrf }) });
    return r.status;
  }, device);
  check(status === 403, "a viewer's forged write answers 403, got " + status);
  const refusal = await page.evaluate(async () => {
    const csrf = document.querySelector('input[name="csrf"]').value;
    const r = await fetch("/devices/bulk", { method: "POST", body: new URLSearchParams({ csrf, id: "x", action: "disable" }) });
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    const msg = doc.querySelector("main .error");
    document.querySelector("main").prepend(document.importNode(msg, true));
    return { status: r.status, text: msg.textContent };
  });
  check(refusal.status === 403 && refusal.text.includes("viewer role"), "the refusal says why: " + JSON.stringify(refusal));
  await shot(page, "08-viewer-refused");
  await page.context().clearCookies();
});

await test("dashboards", async (page) => {
  await signIn(page, admin);
  await timedGoto(page, "/dashboards");
  await page.getByRole("button", { name: "Create the factory dashboard" }).click();
  await page.getByTestId("dashboard").waitFor();
  check(await page.locator('.tile[data-kind="devices"]').count() >= 1, "the factory dashboard has device tables");
  check(await page.locator('.tile[data-kind="line"]').count() >= 1, "the factory dashboard has line charts");
  await page.waitForFunction(() => document.querySelectorAll(".tile-chart canvas").length > 0, null, { timeout: 10000 });
  await page.getByLabel("Kind").selectOption("latest");
  await page.getByLabel("Title").fill("Custom latest");
  await page.getByLabel("Device id").fill(device);
  const field = await page.locator('.tile[data-kind="latest"]').first().getAttribute("aria-labelledby");
  check(field, "a latest tile exists");
  await page.getByLabel("Field").fill((await page.locator("#" + field).innerText()).split(" ").pop());
  await page.getByRole("button", { name: "Add tile" }).click();
  await page.getByRole("heading", { name: "Custom latest" }).waitFor();
  await timedGoto(page, "/dashboards");
  await shot(page, "09-dashboard");
});

await test("connectivity-and-placeholders", async (page) => {
  await timedGoto(page, "/connectivity");
  const sims = await page.getByTestId("sims").innerText();
  check(sims.includes("8944000000000000019") && sims.includes("INVENTORY") && sims.includes("AGV north 1"), "connectivity lists the SIM with its state");
  await shot(page, "10-connectivity");
  await timedGoto(page, "/rules");
  await shot(page, "11-rules");
  await timedGoto(page, "/templates");
  await shot(page, "12-templates");
});

await browser.close();
rmSync(profile, { recursive: true, force: true });
if (failures.length) {
  console.log("failed: " + failures.join(", "));
  process.exit(1);
}
