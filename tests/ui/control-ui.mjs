// OpenClaw's own Control UI (the static files of the pinned npm package) against a real claw
// gateway, in headless Debian Chromium driven by playwright-core. Run by scripts/ui-control.sh
// (which installs what it needs); prints PASS/FAIL per check and ends with `ui: N passed, M failed`.
//
// Environment (all required; the script sets them):
//   CLAW_BIN        the claw binary
//   CONTROL_UI_DIR  node_modules/openclaw/dist/control-ui of the pinned openclaw
//   PLAYWRIGHT_CORE the playwright-core package directory
//   CHROMIUM        the browser (default /usr/bin/chromium)
// Optional: UI_CAPTURE=FILE writes the UI's first connect frame and its challenge there (the
// signature test vector in gateway/src/auth/signature.rs came from it); UI_VERBOSE=1 logs frames.

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
const UI_DIR = env("CONTROL_UI_DIR");
const { chromium } = createRequire(import.meta.url)(env("PLAYWRIGHT_CORE"));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const VERBOSE = process.env.UI_VERBOSE === "1";
const STEP_MS = 45_000;

let passed = 0;
let failed = 0;
const check = (name, ok, detail = "") => {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "PASS" : "FAIL"} ${name}${detail ? ` — ${detail}` : ""}`);
  return ok;
};

const work = fs.mkdtempSync(path.join(os.tmpdir(), "claw-ui-"));
const children = [];
const cleanup = () => {
  for (const c of children) {
    try {
      c.kill("SIGTERM");
    } catch {}
  }
};
process.on("exit", () => {
  cleanup();
  if (process.env.UI_KEEP !== "1") fs.rmSync(work, { recursive: true, force: true });
});

// --- the Control UI's static files on a loopback port ---------------------------------------
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".css": "text/css",
  ".json": "application/json",
  ".webmanifest": "application/manifest+json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".webp": "image/webp",
  ".woff2": "font/woff2",
  ".woff": "font/woff",
  ".ttf": "font/ttf",
};
function serveStatic(root) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    let rel = decodeURIComponent(url.pathname);
    let file = path.normalize(path.join(root, rel));
    if (!file.startsWith(root)) {
      res.writeHead(403).end();
      return;
    }
    if (!fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      // The UI is a single-page app: unknown routes get index.html.
      file = path.join(root, "index.html");
    }
    res.writeHead(200, {
      "content-type": TYPES[path.extname(file)] || "application/octet-stream",
      "cache-control": "no-store",
    });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ server, port: server.address().port })),
  );
}

// --- a claw gateway in a fresh home ------------------------------------------------------------
async function startGateway(name, extra) {
  const home = path.join(work, name);
  const child = spawn(
    CLAW,
    ["--home", home, "gateway", "run", "--port", "0", "--auth-fail-delay-ms", "0", ...extra],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: "warn" } },
  );
  children.push(child);
  const rl = readline.createInterface({ input: child.stdout });
  const line = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("gateway not ready in 30 s")), 30_000);
    rl.once("line", (l) => {
      clearTimeout(t);
      resolve(l);
    });
  });
  const m = line.match(/ws:\/\/127\.0\.0\.1:(\d+)/);
  if (!m) throw new Error(`no ready line: ${line}`);
  const token = fs.readFileSync(path.join(home, "gateway.token"), "utf8").trim();
  return { home, port: Number(m[1]), url: `ws://127.0.0.1:${m[1]}`, token, child };
}

function claw(home, ...args) {
  const r = spawnSync(CLAW, ["--home", home, ...args], { encoding: "utf8", timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// --- the browser -------------------------------------------------------------------------------
const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A browser on a profile directory; records every request and every WebSocket frame. */
async function browse(profile) {
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    serviceWorkers: "block",
  });
  const rec = { requests: [], sockets: [], ctx };
  ctx.on("request", (r) => rec.requests.push(r.url()));
  const watch = (page) =>
    page.on("websocket", (ws) => {
      const s = { url: ws.url(), sent: [], received: [], error: null, closed: false };
      rec.sockets.push(s);
      rec.requests.push(ws.url());
      ws.on("framesent", (f) => {
        s.sent.push(f.payload);
        if (VERBOSE) console.log(`  C->S ${String(f.payload).slice(0, 300)}`);
      });
      ws.on("framereceived", (f) => {
        s.received.push(f.payload);
        if (VERBOSE) console.log(`  S->C ${String(f.payload).slice(0, 300)}`);
      });
      ws.on("socketerror", (e) => {
        s.error = String(e);
        if (VERBOSE) console.log(`  socket error ${e}`);
      });
      ws.on("close", () => (s.closed = true));
    });
  ctx.pages().forEach(watch);
  ctx.on("page", watch);
  rec.page = ctx.pages()[0] || (await ctx.newPage());
  return rec;
}

const parse = (p) => {
  try {
    return JSON.parse(String(p));
  } catch {
    return null;
  }
};
const frames = (rec, dir) =>
  rec.sockets.flatMap((s) => s[dir].map(parse).filter(Boolean).map((f) => ({ f, s })));
const helloOk = (rec) =>
  frames(rec, "received").find(({ f }) => f.type === "res" && f.ok && f.payload?.type === "hello-ok");

async function until(pred, ms = STEP_MS) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = pred();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  return pred();
}

/** Clicks the "Switch to …" button of the UI's gateway prompt, if it shows one. */
async function acceptSwitch(page) {
  const button = page.getByRole("button", { name: /Switch to/i });
  try {
    await button.first().waitFor({ state: "visible", timeout: 20_000 });
  } catch {
    return false;
  }
  await button.first().click();
  return true;
}

function offLoopback(urls) {
  return urls.filter((u) => {
    if (u.startsWith("data:") || u.startsWith("blob:") || u.startsWith("about:")) return false;
    try {
      const h = new URL(u).hostname;
      return !(h === "127.0.0.1" || h === "localhost" || h === "[::1]");
    } catch {
      return true;
    }
  });
}

// --- the checks --------------------------------------------------------------------------------
async function main() {
  const ui = await serveStatic(fs.realpathSync(UI_DIR));
  const uiOrigin = `http://127.0.0.1:${ui.port}`;
  const gw = await startGateway("home", ["--allow-origin", uiOrigin]);
  const profile = path.join(work, "profile");
  const open = `${uiOrigin}/?gatewayUrl=${encodeURIComponent(gw.url)}#token=${gw.token}`;

  // 1. First visit: the UI asks to switch gateways, connects, signs with a new device identity,
  //    is paired silently on loopback and gets a device token.
  let b = await browse(profile);
  await b.page.goto(open);
  const clicked = await acceptSwitch(b.page);
  check("the UI shows its \"Switch to …\" gateway prompt", clicked);
  const hello = await until(() => helloOk(b));
  check("first visit: hello-ok from claw", !!hello, hello ? "" : `frames: ${JSON.stringify(frames(b, "received").map(({ f }) => f.error ?? f.event ?? f.payload?.type)).slice(0, 400)}`);
  const connect = frames(b, "sent").find(({ f }) => f.method === "connect")?.f;
  const challenge = frames(b, "received").find(({ f }) => f.event === "connect.challenge")?.f;
  check(
    "the UI signed a device identity and was paired silently (hello-ok carries a device token)",
    !!connect?.params?.device && typeof hello?.f?.payload?.auth?.deviceToken === "string",
    connect ? `client ${JSON.stringify(connect.params.client)}` : "no connect frame",
  );
  if (process.env.UI_CAPTURE && connect && challenge) {
    fs.writeFileSync(process.env.UI_CAPTURE, JSON.stringify({ challenge, connect }, null, 1));
  }
  const listed = claw(gw.home, "devices", "list", "--json");
  check(
    "the UI's device is listed as paired",
    listed.code === 0 && connect?.params?.device?.id && listed.out.includes(connect.params.device.id),
    listed.code === 0 ? "" : listed.err,
  );
  await new Promise((r) => setTimeout(r, 1500));
  const loops = frames(b, "sent").filter(({ f }) => f.method === "connect").length;
  check("the UI does not reconnect in a loop after hello-ok", loops === 1, `${loops} connects`);
  const firstRequests = [...b.requests];
  await b.ctx.close();

  // 2. The same profile again, without the token in the URL: the UI reconnects with its stored
  //    device identity and device token.
  b = await browse(profile);
  await b.page.goto(`${uiOrigin}/`);
  await acceptSwitch(b.page);
  const hello2 = await until(() => helloOk(b));
  const connect2 = frames(b, "sent").find(({ f }) => f.method === "connect")?.f;
  check(
    "reopened profile: hello-ok again with the same device",
    !!hello2 && connect2?.params?.device?.id === connect?.params?.device?.id,
    hello2 ? `auth ${JSON.stringify(connect2?.params?.auth ? Object.keys(connect2.params.auth) : null)} method ${hello2.f.payload.auth?.method}` : `frames: ${JSON.stringify(frames(b, "received").map(({ f }) => f.error ?? f.event)).slice(0, 400)}`,
  );
  const allRequests = [...firstRequests, ...b.requests];
  const off = offLoopback(allRequests);
  check(
    `the page made ${allRequests.length} requests, none off loopback`,
    allRequests.length > 0 && off.length === 0,
    off.slice(0, 5).join(" "),
  );
  await b.ctx.close();

  // 3. A gateway that does not allow the UI's origin refuses it before the upgrade.
  const strict = await startGateway("strict", []);
  b = await browse(path.join(work, "profile-strict"));
  await b.page.goto(`${uiOrigin}/?gatewayUrl=${encodeURIComponent(strict.url)}#token=${strict.token}`);
  await acceptSwitch(b.page);
  const toStrict = () => b.sockets.filter((s) => s.url.startsWith(strict.url));
  await until(() => toStrict().some((s) => s.error || s.closed), 20_000);
  const tried = toStrict();
  const anyFrame = tried.reduce((n, s) => n + s.received.length, 0);
  check(
    "origin not allowed: the upgrade is refused with 403, no challenge, no hello-ok",
    tried.length > 0 && anyFrame === 0 && !helloOk(b) && tried.every((s) => !s.error || /403/.test(s.error)),
    `${tried.length} sockets, ${anyFrame} frames, error ${tried[0]?.error}`,
  );
  const audit = claw(strict.home, "gateway", "audit", "--json", "--limit", "100");
  check(
    "origin not allowed: audited as origin_not_allowed",
    audit.code === 0 && audit.out.includes(`origin_not_allowed ${uiOrigin}`),
    audit.err,
  );
  await b.ctx.close();
  ui.server.close();
}

const deadline = setTimeout(() => {
  check("finished within 3 minutes", false);
  console.log(`ui: ${passed} passed, ${failed} failed`);
  process.exit(1);
}, 180_000);
try {
  await main();
} catch (e) {
  check("driver", false, String(e?.stack || e));
}
clearTimeout(deadline);
console.log(`ui: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
