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
const pressId = env("CONSOLE_DEVICE"), operatorUser = env("OPERATOR_USER"), viewerUser = env("VIEWER_USER"), password = env("USER_PASSWORD");
const setpoint = env("TWIN_SETPOINT");
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
  await page.getByRole("button", { name: "Sign in with token" }).click();
  await page.waitForURL(base + "/");
}

async function signInUser(page, name) {
  await timedGoto(page, "/login");
  await page.getByLabel("User name").fill(name);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
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
  await page.getByRole("button", { name: "Sign in with token" }).click();
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
  const anomaly = await page.getByTestId("anomaly").innerText();
  check(/Learning this machine|score \d\.\d\d/.test(anomaly), "the anomaly panel shows learning or a score: " + anomaly);
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
  check(await page.locator('.tile[data-kind="alerts"] tbody td').first().isVisible(), "the alert list tile shows its rows (or that there are none)");
  await page.waitForFunction(() => document.querySelectorAll(".tile-chart canvas").length > 0, null, { timeout: 10000 });
  await page.getByLabel("Kind").selectOption("latest");
  await page.getByLabel("Title").fill("Custom latest");
  // Bind it to the device and field of the factory dashboard's first latest tile (titled "device field").
  const field = await page.locator('.tile[data-kind="latest"]').first().getAttribute("aria-labelledby");
  check(field, "a latest tile exists");
  const [tileDevice, tileField] = (await page.locator("#" + field).innerText()).split(" ");
  await page.getByLabel("Device id").fill(tileDevice);
  await page.getByLabel("Field").fill(tileField);
  await page.getByRole("button", { name: "Add tile" }).click();
  await page.getByRole("heading", { name: "Custom latest" }).waitFor();
  check(await page.locator('.tile[data-kind="latest"]', { hasText: "Custom latest" }).locator(".big").count() === 1, "the new latest tile shows a value");
  await timedGoto(page, "/dashboards");
  await shot(page, "09-dashboard");
});

await test("connectivity-rules-templates", async (page) => {
  await timedGoto(page, "/connectivity");
  const sims = await page.getByTestId("sims").innerText();
  check(sims.includes("8944000000000000019") && sims.includes("INVENTORY") && sims.includes("AGV north 1"), "connectivity lists the SIM with its state");
  const groups = await page.getByTestId("device-groups").innerText();
  check(groups.includes("robots-north") && groups.includes("2 Mbit/s / 10 Mbit/s") && groups.includes("platinum (ARP 2)"), "connectivity lists the device group with its limits and class");
  const slices = await page.getByTestId("slices").innerText();
  check(slices.includes("robots") && slices.includes("robots-north") && slices.includes("DENY-ALL"), "connectivity lists the slice with its groups");
  await shot(page, "10-connectivity");
  await timedGoto(page, "/rules");
  await shot(page, "11-rules");
  await timedGoto(page, "/templates");
  await shot(page, "12-templates");
});

await test("users-page", async (page) => {
  await timedGoto(page, "/users");
  await page.getByLabel("User name").fill("olga.shift");
  await page.getByLabel("Role").selectOption("operator");
  await page.getByLabel("Password (10 to 72 characters)").fill("night-shift-2026");
  await page.getByLabel("Password again").fill("night-shift-2026");
  await page.getByRole("button", { name: "Add user" }).click();
  await page.waitForURL(/added=olga.shift/);
  const list = await page.getByTestId("users").innerText();
  check(list.includes("olga.shift") && list.includes(operatorUser) && list.includes(viewerUser), "the users page lists the new and the API-made users: " + list);
  const nav = await page.locator("header.top").boundingBox();
  check(nav.height < 70, "the header with the admin's Users link stays on one line at 1024 px: " + nav.height);
  await shot(page, "12b-users");
});

await test("sign-in-password", async (page) => {
  await page.context().clearCookies();
  await timedGoto(page, "/login");
  await page.getByLabel("User name").fill(operatorUser);
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByRole("alert").waitFor();
  check((await page.getByRole("alert").innerText()).includes("Wrong user name or password"), "a wrong password is refused with a message");
  check(await page.getByLabel("User name").inputValue() === operatorUser, "the user name stays filled in after a refusal");
  await shot(page, "13-login-wrong-password");
  await signInUser(page, operatorUser);
  await page.getByRole("heading", { name: "Fleet overview" }).waitFor();
  check((await page.locator(".role").innerText()) === "operator", "the header shows the user's role");
  await shot(page, "14-signed-in-as-user");
  // The header leads to the account page, where users change their own
  // password (and back, so later tests sign in as before).
  await page.locator("a.role").click();
  await page.getByRole("heading", { name: "Your account" }).waitFor();
  const change = async (from, to) => {
    await page.getByLabel("Current password").fill(from);
    await page.getByLabel("New password (10 to 72 characters)").fill(to);
    await page.getByLabel("New password again").fill(to);
    await page.getByRole("button", { name: "Change password" }).click();
    await page.getByRole("status").waitFor();
  };
  await change(password, password + "-2");
  check((await page.getByRole("status").innerText()).includes("Password changed"), "the password change is confirmed");
  await shot(page, "14b-account-password-changed");
  await change(password + "-2", password);
});

await test("twin-edit-reaches-device", async (page) => {
  await timedGoto(page, "/devices/" + pressId);
  await page.getByLabel("Desired properties patch (JSON, merged)").fill(JSON.stringify({ setpoint: +setpoint }));
  await page.getByRole("button", { name: "Update desired" }).click();
  await page.waitForURL(/#twin$/);
  check((await page.getByTestId("twin-desired").innerText()).includes(setpoint), "desired shows the new setpoint");
  // The device applies the setpoint and reports it back; reload until the reported side has it.
  const deadline = Date.now() + 20000;
  while (!(await page.getByTestId("twin-reported").innerText()).includes(setpoint)) {
    check(Date.now() < deadline, "the device reported the setpoint back within 20 s");
    await page.waitForTimeout(500);
    await page.reload();
  }
  await page.locator("#twin").scrollIntoViewIfNeeded();
  await shot(page, "15-twin-edit-reported");
});

await test("method-invocation", async (page) => {
  await timedGoto(page, "/devices/" + pressId);
  await page.getByLabel("Method", { exact: true }).fill("reboot");
  await page.getByLabel("Payload (JSON)").fill('{"delaySeconds": 1}');
  await page.getByLabel("Timeout (seconds)").fill("10");
  await page.getByRole("button", { name: "Invoke" }).click();
  const result = page.getByTestId("method-result");
  await result.waitFor({ timeout: 15000 });
  const text = await result.innerText();
  check(text.includes("Status 200") && text.includes('"rebooted": true') && text.includes("delaySeconds"), "the device's answer is shown: " + text);
  check(await page.getByLabel("Method", { exact: true }).inputValue() === "reboot", "the method form keeps its values for another try");
  await result.scrollIntoViewIfNeeded();
  await shot(page, "16-method-response");
});

await test("rule-editor-fires-and-ack", async (page) => {
  await timedGoto(page, "/rules");
  await page.getByLabel("Name", { exact: true }).fill("Console hot press");
  // Keyboard: Tab goes from the name to the condition editor.
  await page.getByLabel("Name", { exact: true }).focus();
  await page.keyboard.press("Tab");
  check(await page.evaluate(() => document.activeElement.id) === "r-cond", "Tab moves from Name to Condition");
  // Live validation points at the mistake while typing.
  await page.getByLabel("Condition", { exact: true }).fill("temperature >> 90");
  const bad = page.getByTestId("cond-error");
  await bad.waitFor({ timeout: 10000 });
  check(/line 1, column \d+/i.test(await bad.innerText()), "the validation names the position: " + await bad.innerText());
  await shot(page, "17-rule-validation-error");
  await page.getByLabel("Condition", { exact: true }).fill("temperature > 90");
  await page.getByTestId("cond-ok").waitFor({ timeout: 10000 });
  await page.getByLabel("Severity", { exact: true }).selectOption("major");
  await page.getByLabel("Device", { exact: true }).fill(pressId);
  await page.getByLabel("Dry run over the last").selectOption("1h");
  await page.getByRole("button", { name: "Dry run" }).click();
  const dry = page.getByTestId("dryrun-result");
  await dry.waitFor({ timeout: 20000 });
  check(/[1-9]\d* firing/.test(await dry.innerText()), "the dry run finds firings in the device's hot history: " + await dry.innerText());
  check(page.url().endsWith("/rules"), "the dry run ran in place (htmx), the page stayed: " + page.url());
  await shot(page, "18-rule-dry-run");
  await page.getByRole("button", { name: "Create rule" }).click();
  await page.waitForURL(/\/rules\?saved=/);
  check((await page.getByTestId("rules").innerText()).includes("Console hot press"), "the rule is listed");
  // The device keeps sending 95 °C or more: the rule fires and the alert reaches the inbox.
  const row = page.locator('[data-testid="inbox"] tr', { hasText: "Console hot press" });
  const deadline = Date.now() + 30000;
  while (await row.count() === 0) {
    check(Date.now() < deadline, "the rule's alert appears in the inbox within 30 s");
    await page.waitForTimeout(1000);
    await timedGoto(page, "/rules");
  }
  check((await row.first().innerText()).includes("open"), "the new alert is open");
  await page.locator("#inbox").scrollIntoViewIfNeeded();
  await shot(page, "19-alert-inbox-open");
  await page.getByRole("button", { name: "Acknowledge the Console hot press alert on " + pressId }).click();
  await page.waitForURL(/state=active/);
  check((await row.first().innerText()).includes("acknowledged"), "the alert is acknowledged in the inbox");
  await page.locator("#inbox").scrollIntoViewIfNeeded();
  await shot(page, "20-alert-inbox-acknowledged");
  await row.first().getByRole("link", { name: /Details/ }).click();
  await page.getByLabel("Add a note").fill("Coolant valve checked, setpoint lowered.");
  await page.getByRole("button", { name: "Add note" }).click();
  await page.getByTestId("notes").getByText("Coolant valve checked").waitFor();
  check((await page.getByTestId("notes").innerText()).includes("user:" + operatorUser), "the note names the user");
  await shot(page, "21-alert-detail-note");
  await page.emulateMedia({ colorScheme: "dark" });
  await timedGoto(page, "/rules");
  await shot(page, "22-rules-dark");
  await page.emulateMedia({ colorScheme: "light" });
});

await test("templates-import-export", async (page) => {
  await timedGoto(page, "/templates");
  check((await page.getByTestId("templates").innerText()).includes("press"), "the press template is listed");
  await page.getByLabel("or paste the JSON").fill(JSON.stringify({ id: "drill", name: "Pillar drill",
    telemetry: [{ name: "spindle_rpm", schema: "double", unit: "rpm", min: 0, max: 3000 }], properties: [], commands: [] }));
  await page.getByRole("button", { name: "Import" }).click();
  await page.waitForURL(base + "/templates/drill");
  check((await page.getByTestId("template-fields").innerText()).includes("spindle_rpm"), "the imported template shows its fields");
  // Edit the JSON: add a unit-bearing property, save, see it in the fields.
  const doc = JSON.parse(await page.getByLabel("Template document").inputValue());
  doc.properties = [{ name: "feed", schema: "double", unit: "mm/min", writable: true }];
  await page.getByLabel("Template document").fill(JSON.stringify(doc, null, 2));
  await page.getByRole("button", { name: "Save template" }).click();
  await page.waitForURL(/saved=1/);
  check((await page.getByTestId("template-fields").innerText()).includes("mm/min"), "the edit is saved");
  await shot(page, "23-template-detail");
  const [dl] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Export JSON" }).click()]);
  const { readFileSync } = await import("node:fs");
  const exported = JSON.parse(readFileSync(await dl.path(), "utf8"));
  check(exported.id === "drill" && exported.properties[0].name === "feed", "the export is the edited template: " + JSON.stringify(exported));
  await timedGoto(page, "/templates");
  await shot(page, "24-templates");
});

await test("dashboard-promql-tile", async (page) => {
  await timedGoto(page, "/dashboards");
  await page.getByLabel("Kind").selectOption("promql");
  await page.getByLabel("Title").fill("Temperature by device (PromQL)");
  await page.getByLabel("PromQL expression (PromQL chart)").fill('max by (device) (temperature{device="' + pressId + '"})');
  await page.getByRole("button", { name: "Add tile" }).click();
  await page.getByRole("heading", { name: "Temperature by device (PromQL)" }).waitFor();
  const tile = page.locator('.tile[data-kind="promql"]');
  await tile.locator("canvas").first().waitFor({ timeout: 10000 });
  check(+(await tile.locator("[data-multi]").getAttribute("data-series")) >= 1, "the PromQL tile draws at least one series");
  // A broken expression is refused with the parser's message.
  await page.getByLabel("Kind").selectOption("promql");
  await page.getByLabel("PromQL expression (PromQL chart)").fill("max by (device (temperature");
  await page.getByRole("button", { name: "Add tile" }).click();
  check((await page.locator("main .error").innerText()).includes("does not run"), "a broken expression is refused");
  await page.goBack();
  await tile.scrollIntoViewIfNeeded();
  await shot(page, "25-dashboard-promql");
});

await test("viewer-user-refused", async (page) => {
  await page.context().clearCookies();
  await signInUser(page, viewerUser);
  await timedGoto(page, "/rules");
  check(await page.getByRole("button", { name: "Create rule" }).count() === 0, "a viewer sees no Create rule button");
  check(await page.getByRole("button", { name: /^Acknowledge/ }).count() === 0, "a viewer sees no Acknowledge buttons");
  const statuses = await page.evaluate(async (id) => {
    const csrf = document.querySelector('input[name="csrf"]').value;
    const post = async (path, fields) => (await fetch(path, { method: "POST", body: new URLSearchParams({ csrf, ...fields }) })).status;
    return {
      rule: await post("/rules", { name: "viewer rule", condition: "temperature > 1" }),
      twin: await post("/devices/" + id + "/twin", { desired: '{"setpoint": 1}' }),
      method: await post("/devices/" + id + "/methods", { method: "reboot", payload: "{}" }),
      validate: await post("/rules/validate", { condition: "temperature > 1" }),
    };
  }, pressId);
  check(statuses.rule === 403 && statuses.twin === 403 && statuses.method === 403, "a viewer's forged writes answer 403: " + JSON.stringify(statuses));
  check(statuses.validate === 200, "a viewer may still validate a condition (it changes nothing): " + JSON.stringify(statuses));
  await timedGoto(page, "/devices/" + pressId);
  check(await page.getByRole("button", { name: "Update desired" }).count() === 0, "a viewer sees no twin editor");
  await shot(page, "26-viewer-user-device");
  await page.context().clearCookies();
});

await browser.close();
rmSync(profile, { recursive: true, force: true });
if (failures.length) {
  console.log("failed: " + failures.join(", "));
  process.exit(1);
}
