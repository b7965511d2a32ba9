// claw's own control page (`claw dashboard`) in headless Debian Chromium driven by
// playwright-core, against a real gateway with a tunnel and real devices (`claw tunnel pair`,
// `claw tunnel up`). Run by scripts/ui-dashboard.sh; prints PASS/FAIL per check, the page weight
// and time to first render, and ends with `ui: N passed, M failed`.
//
// Environment (the script sets them): CLAW_BIN, PLAYWRIGHT_CORE, CHROMIUM; optional UI_KEEP=1
// keeps the temporary directory (screenshots are saved there: main.png, pair.png, qr.png,
// device.png).

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { createRequire } from "node:module";

const env = (k) => {
  const v = process.env[k];
  if (!v) {
    console.log(`FAIL setup: ${k} is not set`);
    console.log("ui: 0 passed, 1 failed");
    process.exit(1);
  }
  return v;
};
const CLAW = env("CLAW_BIN");
const { chromium } = createRequire(import.meta.url)(env("PLAYWRIGHT_CORE"));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const STEP_MS = 45_000;

let passed = 0;
let failed = 0;
const check = (name, ok, detail = "") => {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "PASS" : "FAIL"} ${name}${detail ? ` — ${detail}` : ""}`);
  return ok;
};

const work = fs.mkdtempSync(path.join(os.tmpdir(), "claw-dash-"));
const children = [];
process.on("exit", () => {
  for (const c of children) {
    try {
      c.kill("SIGTERM");
    } catch {}
  }
  if (process.env.UI_KEEP !== "1") fs.rmSync(work, { recursive: true, force: true });
  else console.log(`kept ${work}`);
});

function claw(home, ...args) {
  const r = spawnSync(CLAW, ["--home", home, ...args], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, RUST_LOG: "warn" },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Spawns claw; resolves with the child and its first stdout line. */
async function spawnClaw(home, args) {
  const child = spawn(CLAW, ["--home", home, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  children.push(child);
  child.exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  child.stderrText = "";
  child.stderr.on("data", (d) => (child.stderrText += d));
  return child;
}

async function firstLine(child) {
  const rl = readline.createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no ready line in 30 s")), 30_000);
    rl.once("line", (l) => {
      clearTimeout(t);
      resolve(l);
    });
  });
}

async function until(pred, ms = STEP_MS) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await pred();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  return pred();
}

const timeout = (p, ms) =>
  Promise.race([p, new Promise((r) => setTimeout(() => r("timeout"), ms))]);

// --- the gateway ---------------------------------------------------------------------------------
const gwHome = path.join(work, "gw");
const gw = await spawnClaw(gwHome, [
  "gateway", "run", "--port", "0", "--auth-fail-delay-ms", "0", "--tunnel", "127.0.0.1:0",
]);
const ready = await firstLine(gw);
const port = Number((ready.match(/ws:\/\/127\.0\.0\.1:(\d+)/) || [])[1]);
if (!port) {
  console.log(`FAIL setup: no ready line: ${ready}`);
  process.exit(1);
}
const ORIGIN = `http://127.0.0.1:${port}`;

function loginUrl() {
  const r = claw(gwHome, "dashboard", "--json", "--no-open");
  if (r.code !== 0) throw new Error(`claw dashboard: ${r.err}`);
  return JSON.parse(r.out).url;
}

// --- the browser ---------------------------------------------------------------------------------
const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
const ctx = await browser.newContext();
const requests = [];
let bytes = 0;
ctx.on("request", (r) => requests.push(r.url()));
ctx.on("response", async (r) => {
  try {
    bytes += (await r.body()).length;
  } catch {}
});
const page = await ctx.newPage();
page.on("websocket", (ws) => requests.push(ws.url()));

// 1. The login link works once; the code leaves no trace in the URL.
const url = loginUrl();
const code = url.split("#")[1];
const t0 = Date.now();
const first = await page.goto(url);
await page.waitForSelector("body[data-ready='1']", { timeout: STEP_MS }).catch(() => {});
const ttfr = Date.now() - t0;
check("login link opens the page", (await page.evaluate(() => document.body.dataset.ready)) === "1", page.url());
check("no code in the address bar or history entry", !page.url().includes(code) && !page.url().includes("#"), page.url());
const main = await page.goto(`${ORIGIN}/`);
const h = main.headers();
check(
  "CSP and framing headers on the page",
  (h["content-security-policy"] || "").includes("default-src 'none'") &&
    (h["content-security-policy"] || "").includes("frame-ancestors 'none'") &&
    h["x-frame-options"] === "DENY" &&
    h["x-content-type-options"] === "nosniff" &&
    !Object.keys(h).some((k) => k.startsWith("access-control-")),
  h["content-security-policy"],
);
await page.waitForSelector("body[data-ready='1']", { timeout: STEP_MS }).catch(() => {});
void first;

const other = await browser.newContext();
const p2 = await other.newPage();
await p2.goto(url);
await p2.waitForTimeout(1500);
const reuse = await p2.textContent("#login-status").catch(() => "");
check("the same link a second time is refused", /already used/.test(reuse || ""), reuse);
await p2.goto(`${ORIGIN}/login#wrong-code`);
await p2.waitForTimeout(1000);
const wrong = await p2.textContent("#login-status").catch(() => "");
check("a wrong code is refused", /already used|wrong|expired/.test(wrong || ""), wrong);
await p2.goto(`${ORIGIN}/`);
check("without a session / redirects to the login page", p2.url().endsWith("/login"), p2.url());

// 1b. The status panel names the listeners; the doctor panel shows a finding and applies the
//     safe fix.
const status = await until(async () => {
  const t = (await page.textContent("#status").catch(() => "")) || "";
  return /udp:\/\/127\.0\.0\.1:\d+/.test(t) && t;
});
check("the status panel shows the listeners (tunnel, SSH, relay, upstream)", !!status && /SSH/.test(status) && /Relay/.test(status) && /Upstream/.test(status), status);
const tokenFile = path.join(gwHome, "gateway.token");
fs.chmodSync(tokenFile, 0o644);
await page.click("#doctor-run");
const finding = await until(async () => (await page.$("#doctor tr[data-check='secret.permissions']")) || null);
check("the doctor panel shows a finding (a secret file readable by others)", !!finding);
const fixVisible = await until(async () => !(await page.$eval("#doctor-fix", (b) => b.hidden).catch(() => true)));
if (check("the safe fix is offered", !!fixVisible)) {
  await page.click("#doctor-fix");
  await page.click("#confirm-yes");
  const fixed = await until(async () => /fixed:/.test((await page.textContent("#doctor").catch(() => "")) || ""));
  check("applying the safe fix from the page repairs the file mode", !!fixed && (fs.statSync(tokenFile).mode & 0o777) === 0o600, (fs.statSync(tokenFile).mode & 0o777).toString(8));
}

// 2. A device waiting in `claw tunnel pair --require-approval` appears; approving it lets it
//    finish by itself.
const pairJson = (extra) => {
  const r = claw(gwHome, "pair", "--json", ...extra);
  if (r.code !== 0) throw new Error(`claw pair: ${r.err}`);
  return JSON.parse(r.out);
};
const devHome = path.join(work, "laptop");
fs.mkdirSync(devHome);
const waiting = await spawnClaw(devHome, ["tunnel", "pair", pairJson(["--require-approval", "--name", "laptop"]).uri]);
const row = await until(async () => (await page.$("#pending tr[data-request-id]")) || null);
check("the waiting device appears on the page", !!row);
if (row) {
  const text = await row.textContent();
  check("the request shows its name and address", /laptop/.test(text) && /127\.0\.0\.1:\d+/.test(text), text);
  await (await row.$("button.primary")).click();
}
const pairCode = await timeout(waiting.exited, STEP_MS);
check("approving in the browser lets the device finish pairing", pairCode === 0, `exit ${pairCode} ${waiting.stderrText.slice(-200)}`);

// 2b. Rejecting a waiting device in the browser: its `claw tunnel pair` ends refused and the row
//     goes away (`device.pair.resolved` on reject too).
const tabletHome = path.join(work, "tablet");
fs.mkdirSync(tabletHome);
const tablet = await spawnClaw(tabletHome, ["tunnel", "pair", pairJson(["--require-approval", "--name", "tablet"]).uri]);
const trow = await until(async () => (await page.$("#pending tr[data-request-id]")) || null);
if (check("a second waiting device appears", !!trow)) await (await trow.$("button.danger")).click();
const tabletCode = await timeout(tablet.exited, STEP_MS);
check("rejecting in the browser refuses the device's pairing", tabletCode !== "timeout" && tabletCode !== 0, `exit ${tabletCode}`);
const gone = await until(async () => !(await page.$("#pending tr[data-request-id]")));
check("the rejected request leaves the page without a reload", !!gone);

// 3. With its tunnel up the device shows online over the tunnel, live.
const up = await spawnClaw(devHome, ["tunnel", "up", "--listen", "127.0.0.1:0"]);
await firstLine(up).catch(() => {});
const online = await until(async () => {
  const t = await page.textContent("#devices").catch(() => "");
  return /online \/ tunnel/.test(t || "");
});
check("the device shows online / tunnel without a reload", !!online);
await page.screenshot({ path: path.join(work, "main.png"), fullPage: true });

// 4. The QR code on the page decodes to the URI it shows, which pairs a device.
await page.click("#pair");
await page.waitForSelector("#qr img", { timeout: STEP_MS }).catch(() => {});
const shownUri = await page.getAttribute("#pair-cmd", "data-uri").catch(() => null);
const qr = await page.$("#qr img");
let decoded = "";
if (qr) {
  await qr.screenshot({ path: path.join(work, "qr.png") });
  const z = spawnSync("zbarimg", ["--raw", "-q", path.join(work, "qr.png")], { encoding: "utf8" });
  decoded = (z.stdout || "").trim();
}
await page.screenshot({ path: path.join(work, "pair.png"), fullPage: true });
const cliUri = pairJson([]).uri;
check(
  "the page's QR code decodes to its URI, in claw pair's form",
  !!shownUri && decoded === shownUri && decoded.split("/").slice(0, 3).join("/") === cliUri.split("/").slice(0, 3).join("/"),
  `decoded ${decoded} shown ${shownUri}`,
);
const phone = path.join(work, "phone");
fs.mkdirSync(phone);
const pr = claw(phone, "tunnel", "pair", decoded || "none");
check("the decoded URI pairs a device", pr.code === 0, pr.err.slice(-200));
const expiry = await page.textContent("#pair-expiry").catch(() => "");
check("the code shows its expiry countdown", /expires in \d+:\d\d/.test(expiry || ""), expiry);

// 5. Rotation from the page: the connected device comes back with a new-generation token.
const gen = () => {
  try {
    return JSON.parse(fs.readFileSync(path.join(devHome, "device-token.json"), "utf8")).generation;
  } catch {
    return 0;
  }
};
const before = gen();
await page.click("#rotate");
await page.click("#confirm-yes");
const after = await until(() => gen() > before && gen());
check("rotation from the page re-pairs the connected device", after > before, `generation ${before} -> ${after}`);
const repaired = await until(async () => /device\.repaired/.test((await page.textContent("#audit").catch(() => "")) || ""));
check("the page shows the device re-paired, still logged in", !!repaired && (await page.evaluate(() => document.body.dataset.ready)) === "1");

// 6. Revoking in the browser stops its `claw tunnel up`.
await page.locator("#devices tr", { hasText: "laptop" }).getByRole("button", { name: "Revoke" }).click();
await page.click("#confirm-yes");
const upCode = await timeout(up.exited, STEP_MS);
if (upCode === "timeout") console.log(`  devices: ${await page.textContent("#devices")} up: ${up.stderrText.slice(-300)}`);
check("revoking in the browser stops the device's tunnel up", upCode !== "timeout" && upCode !== 0, `exit ${upCode}`);

// 6b. `kill -9` of a device's `claw tunnel up`: the page shows it offline within a few
//     keep-alives (the gateway notices the silence; bounded at 20 s, the idle timeout is 45 s).
const phoneUp = await spawnClaw(phone, ["tunnel", "up", "--listen", "127.0.0.1:0"]);
const phoneReady = (await firstLine(phoneUp).catch(() => "")) || "";
const phoneRow = () => page.locator("#devices tr").filter({ hasNotText: "laptop" }).filter({ hasText: "tunnel" });
const phoneOnline = await until(async () => /online \/ tunnel/.test((await phoneRow().first().textContent({ timeout: 1000 }).catch(() => "")) || ""));
// 6a. The page through the device's own `claw tunnel up` port: the phone, once it holds
//     operator.admin (granted by `claw devices set-scopes`), gets a login
//     link on its tunnel's local address from `claw tunnel dashboard`; the page loads there,
//     shows the device list, and acts as the phone.
if (phoneOnline) {
  const upPort = Number((phoneReady.match(/ws:\/\/127\.0\.0\.1:(\d+)/) || [])[1]);
  const refused = claw(phone, "tunnel", "dashboard", "--json", "--no-open");
  check("without operator.admin the device gets no login link", refused.code === 77, `exit ${refused.code} ${refused.err.slice(-160)}`);
  const listed = claw(gwHome, "devices", "list", "--json");
  const paired = listed.code === 0 ? JSON.parse(listed.out).paired || [] : [];
  const phoneDev = paired.find((d) => d.displayName !== "laptop" && d.revokedAtMs == null);
  const phoneId = phoneDev ? phoneDev.deviceId : "";
  const granted = claw(gwHome, "devices", "set-scopes", phoneId || "none", "operator.read,operator.write", "operator.admin", "--json");
  const grant = { status: granted.code, stderr: granted.err };
  const link = claw(phone, "tunnel", "dashboard", "--json", "--no-open");
  const devUrl = link.code === 0 ? JSON.parse(link.out).url : "";
  check(
    "claw tunnel dashboard prints a link on the tunnel's local port",
    grant.status === 0 && devUrl.startsWith(`http://127.0.0.1:${upPort}/login#`) && upPort !== port,
    `${devUrl.split("#")[0]} ${link.err.slice(-160)} ${grant.stderr || ""}`,
  );
  const dctx = await browser.newContext();
  const dreq = [];
  dctx.on("request", (r) => dreq.push(r.url()));
  const dp = await dctx.newPage();
  dp.on("websocket", (ws) => dreq.push(ws.url()));
  if (devUrl) await dp.goto(devUrl);
  await dp.waitForSelector("body[data-ready='1']", { timeout: STEP_MS }).catch(() => {});
  const dlist = await until(async () => {
    const t = (await dp.textContent("#devices").catch(() => "")) || "";
    return /online \/ tunnel/.test(t) && t;
  });
  check("through the device's tunnel port the page shows the device list", !!dlist && dp.url() === `http://127.0.0.1:${upPort}/`, dp.url());
  await dp.screenshot({ path: path.join(work, "device.png"), fullPage: true });
  check(
    "the device's page talked only to its own tunnel port",
    dreq.length > 0 && dreq.every((u) => u.startsWith(`http://127.0.0.1:${upPort}/`) || u.startsWith(`ws://127.0.0.1:${upPort}/`)),
    dreq.filter((u) => !u.includes(`:${upPort}/`)).slice(0, 3).join(" "),
  );
  await dctx.close();
}
if (check("a second device shows online", !!phoneOnline)) {
  const killedAt = Date.now();
  phoneUp.kill("SIGKILL");
  const offline = await until(async () => {
    const t = (await page.textContent("#devices").catch(() => "")) || "";
    return !/online \/ tunnel/.test(t) && Date.now() - killedAt;
  }, 20_000);
  check("after kill -9 of tunnel up the page shows the device offline within 20 s", !!offline, `after ${offline} ms`);
  if (offline) console.log(`offline after kill -9 shown in ${offline} ms`);
}

// 7. Another local origin can neither open the WebSocket nor read the page.
const evil = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html" });
  res.end("<!doctype html><title>evil</title>");
});
await new Promise((r) => evil.listen(0, "127.0.0.1", r));
const ep = await ctx.newPage();
await ep.goto(`http://127.0.0.1:${evil.address().port}/`);
const attack = await ep.evaluate(async (target) => {
  const ws = await new Promise((resolve) => {
    const s = new WebSocket(`ws://127.0.0.1:${target}/`);
    s.onopen = () => resolve("open");
    s.onerror = () => resolve("refused");
    setTimeout(() => resolve("timeout"), 5000);
  });
  let read = "refused";
  try {
    const r = await fetch(`http://127.0.0.1:${target}/`, { credentials: "include" });
    read = "read " + (await r.text()).slice(0, 40);
  } catch (e) {
    read = "refused";
  }
  return { ws, read };
}, port);
check("another local origin cannot open the WebSocket", attack.ws === "refused", attack.ws);
check("another local origin cannot read the page", attack.read === "refused", attack.read);
evil.close();

// 8. Nothing off loopback, and the numbers.
const off = requests.filter((u) => !/^(https?|wss?):\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?\//.test(u) && !u.startsWith("data:"));
check("the page made no request off loopback", off.length === 0, off.slice(0, 5).join(" "));
console.log(`page weight: ${bytes} bytes over ${requests.length} requests; time to first render (login link to live data): ${ttfr} ms`);
console.log(`screenshots: ${work}/{main,pair,qr,device}.png`);

await browser.close();
console.log(`ui: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
