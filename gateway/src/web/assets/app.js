// The control page: a client of claw's own WebSocket protocol. The session cookie (HttpOnly,
// set by /api/login) is the credential; the connect carries no secret. Every string from the
// gateway is put in the page as text (textContent), never as HTML.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let ws = null;
  let nextId = 1;
  const waiting = new Map();
  let audit = [];
  let pairTimer = null;

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function ago(ms) {
    if (!ms) return "never";
    const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
    if (s < 10) return "just now";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " days ago";
  }

  function call(method, params) {
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== 1) return reject(new Error("not connected"));
      const id = String(nextId++);
      waiting.set(id, { resolve, reject });
      ws.send(JSON.stringify({ type: "req", id, method, params: params || {} }));
    });
  }

  function confirmAction(text) {
    return new Promise((resolve) => {
      const d = $("confirm");
      $("confirm-text").textContent = text;
      const done = (v) => { d.close(); $("confirm-yes").onclick = null; $("confirm-no").onclick = null; resolve(v); };
      $("confirm-yes").onclick = () => done(true);
      $("confirm-no").onclick = () => done(false);
      d.showModal();
    });
  }

  function button(label, cls, onclick) {
    const b = el("button", label, cls);
    b.addEventListener("click", onclick);
    return b;
  }

  async function refreshStatus() {
    const s = await call("gateway.status");
    const rows = $("status");
    rows.replaceChildren();
    const add = (k, v) => { const tr = el("tr"); tr.append(el("th", k), el("td", v)); rows.append(tr); };
    add("Version", s.runtimeVersion || (s.gateway && s.gateway.version) || "");
    add("Uptime", Math.floor((s.uptimeMs || (s.gateway && s.gateway.uptimeMs) || 0) / 1000) + " s");
    const l = s.listeners || {};
    add("WebSocket", (l.ws && l.ws.length ? l.ws : [location.host]).map((a) => "ws://" + a).join(", "));
    add("Tunnel", l.tunnel ? "udp://" + l.tunnel.addr + " (gateway " + String(l.tunnel.gatewayId || "").slice(0, 16) + ")" : "off");
    add("SSH", l.ssh ? "tcp://" + l.ssh.addr + " " + (l.ssh.fingerprint || "") : "off");
    add("Relay", l.relays && l.relays.length ? l.relays.map((r) => r.url).join(", ") : "none");
    add("Upstream", l.upstream ? (l.upstream.url || JSON.stringify(l.upstream)) : "none");
    add("Clients", (s.clients || []).length);
  }

  const SAFE_FIXES = ["chmod", "removeTempFiles", "pruneExpiredPairing"];

  async function refreshDoctor(fix) {
    const r = await call("doctor.run", { fix: !!fix });
    const tb = $("doctor");
    tb.replaceChildren();
    let fixable = 0;
    for (const f of r.findings || []) {
      if (f.severity === "ok") continue;
      const tr = el("tr");
      tr.dataset.check = f.id;
      const todo = f.fixed ? "fixed: " + f.fixed : (f.fixError ? "fix failed: " + f.fixError : (f.hint || ""));
      if (f.fix && !f.fixed && SAFE_FIXES.includes(f.fix.kind)) fixable++;
      tr.append(el("td", f.id, "mono"), el("td", f.severity, "sev-" + f.severity), el("td", f.message), el("td", todo));
      tb.append(tr);
    }
    if (!tb.children.length) { const tr = el("tr"); tr.append(el("td", "Nothing to report: every check is healthy.", "muted")); tb.append(tr); }
    const sm = r.summary || {};
    $("doctor-summary").textContent = (sm.errors || 0) + " error(s), " + (sm.warnings || 0) + " warning(s)" + (fix ? " after the safe fixes" : "");
    $("doctor-fix").hidden = fixable === 0;
  }

  async function refreshDevices() {
    const v = await call("device.pair.list");
    const tb = $("devices");
    tb.replaceChildren();
    for (const d of v.paired || []) {
      const tr = el("tr");
      tr.dataset.deviceId = d.deviceId;
      const name = el("td");
      name.append(el("div", d.displayName || d.clientId || "-"), el("div", d.deviceId.slice(0, 16), "mono muted"));
      const status = d.revoked ? "revoked" : (d.status || "offline");
      const pres = el("td", status + (d.transport ? " / " + d.transport : ""), "status-" + status);
      pres.dataset.role = "presence";
      const seen = el("td", d.connectedSinceMs ? "connected " + ago(d.connectedSinceMs).replace(" ago", "") : ago(d.lastSeenAtMs) + (d.lastTransport ? " (" + d.lastTransport + ")" : ""));
      const scopes = el("td", (d.scopes || []).join(", "), "mono");
      const actions = el("td");
      if (!d.revoked) {
        actions.append(button("Revoke", "danger", async () => {
          if (await confirmAction("Revoke " + (d.displayName || d.deviceId.slice(0, 16)) + "? Its sessions and tunnel close now and its key is refused from now on.")) {
            await call("device.token.revoke", { deviceId: d.deviceId, role: "operator" });
            refreshAll();
          }
        }));
      }
      actions.append(button("Remove", "", async () => {
        if (await confirmAction("Remove " + (d.displayName || d.deviceId.slice(0, 16)) + "? It must pair again to reconnect.")) {
          await call("device.pair.remove", { deviceId: d.deviceId });
          refreshAll();
        }
      }));
      tr.append(name, pres, seen, scopes, actions);
      tb.append(tr);
    }
    if (!(v.paired || []).length) { const tr = el("tr"); tr.append(el("td", "No paired devices.", "muted")); tb.append(tr); }
    const pb = $("pending");
    pb.replaceChildren();
    for (const r of v.pending || []) {
      const tr = el("tr");
      tr.dataset.requestId = r.requestId;
      const name = el("td");
      name.append(el("div", r.displayName || "(no name)"), el("div", r.deviceId.slice(0, 16), "mono muted"));
      const actions = el("td");
      actions.append(
        button("Approve", "primary", async () => { await call("device.pair.approve", { requestId: r.requestId }); refreshAll(); }),
        button("Reject", "danger", async () => { await call("device.pair.reject", { requestId: r.requestId }); refreshAll(); }),
      );
      tr.append(name, el("td", r.origin + (r.remoteAddr ? " " + r.remoteAddr : "")), el("td", ago(r.createdAtMs)), actions);
      pb.append(tr);
    }
    if (!(v.pending || []).length) { const tr = el("tr"); tr.append(el("td", "None waiting.", "muted")); pb.append(tr); }
  }

  async function refreshAudit() {
    const v = await call("audit.tail", { limit: 200 });
    audit = v.entries || [];
    renderAudit();
  }

  function renderAudit() {
    const f = $("audit-filter").value.trim().toLowerCase();
    const hide = $("audit-refusals").checked;
    const tb = $("audit");
    tb.replaceChildren();
    for (const e of audit) {
      const hay = [e.event, e.deviceId || "", e.origin || "", e.detail || ""].join(" ").toLowerCase();
      if (f && !hay.includes(f)) continue;
      if (hide && /failed|refused|rate_limited/.test(e.event)) continue;
      const tr = el("tr");
      const when = el("td", ago(e.tsMs));
      when.title = new Date(e.tsMs).toISOString();
      tr.append(when, el("td", e.event), el("td", (e.deviceId || "").slice(0, 16), "mono"), el("td", e.origin || ""), el("td", e.detail || "", "mono"));
      tb.append(tr);
    }
  }

  function refreshAll() {
    return Promise.all([refreshStatus(), refreshDevices(), refreshAudit(), refreshDoctor(false)]).catch((e) => {
      $("conn").textContent = "error: " + e.message;
    });
  }

  async function pair() {
    $("pair-error").textContent = "";
    try {
      const name = $("pair-name").value.trim();
      const v = await call("dashboard.pair", { name: name || undefined, requireApproval: $("pair-approval").checked });
      const img = el("img");
      img.alt = "pairing QR code";
      img.src = "data:image/svg+xml;base64," + btoa(v.qrSvg);
      $("qr").replaceChildren(img);
      $("pair-cmd").textContent = "claw tunnel pair '" + v.uri + "'";
      $("pair-cmd").dataset.uri = v.uri;
      $("pair-out").hidden = false;
      clearInterval(pairTimer);
      const tick = () => {
        const left = Math.max(0, Math.floor((v.expiresAtMs - Date.now()) / 1000));
        $("pair-expiry").textContent = left > 0 ? "The code works once and expires in " + Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0") + "." : "Expired: make a new code.";
        if (left <= 0) clearInterval(pairTimer);
      };
      tick();
      pairTimer = setInterval(tick, 1000);
    } catch (e) {
      $("pair-error").textContent = e.message;
    }
  }

  async function rotate() {
    if (!(await confirmAction("Rotate the device-token root? Every device token stops working; connected devices re-pair over their tunnel at once."))) return;
    const v = await call("gateway.token.rotate", { force: true });
    $("rotate-out").textContent = "Rotated: generation " + v.generation + ", " + v.closedSessions + " session(s) closed. Devices re-pair as they reconnect.";
    refreshAll();
  }

  function onEvent(f) {
    if (f.event === "device.presence" || f.event === "device.pair.requested" || f.event === "device.pair.resolved" || f.event === "dashboard.changed") {
      refreshDevices().catch(() => {});
      refreshAudit().catch(() => {});
    }
  }

  function connect() {
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/");
    ws.onmessage = (m) => {
      let f;
      try { f = JSON.parse(m.data); } catch (e) { return; }
      if (f.type === "event" && f.event === "connect.challenge") {
        ws.send(JSON.stringify({ type: "req", id: "connect", method: "connect", params: {
          minProtocol: 3, maxProtocol: 4,
          client: { id: "claw-dashboard", version: "1", platform: "web", mode: "webchat" },
          role: "operator", scopes: ["operator.admin"], auth: {},
        } }));
        return;
      }
      if (f.type === "res" && f.id === "connect") {
        if (f.ok) {
          $("conn").textContent = "connected";
          document.body.dataset.ready = "1";
          refreshAll();
        } else {
          $("conn").textContent = "refused: " + (f.error && f.error.message);
        }
        return;
      }
      if (f.type === "res") {
        const w = waiting.get(f.id);
        if (!w) return;
        waiting.delete(f.id);
        if (f.ok) w.resolve(f.payload); else w.reject(new Error((f.error && f.error.message) || "failed"));
        return;
      }
      if (f.type === "event") onEvent(f);
    };
    ws.onclose = (e) => {
      document.body.dataset.ready = "";
      for (const w of waiting.values()) w.reject(new Error("disconnected"));
      waiting.clear();
      if (e.reason && e.reason.indexOf("dashboard session ended") === 0) {
        location.replace("/login");
        return;
      }
      $("conn").textContent = "disconnected (" + (e.reason || e.code) + "); reconnecting…";
      setTimeout(connect, 2000);
    };
  }

  $("logout").addEventListener("click", async () => {
    await fetch("/api/logout", { method: "POST", credentials: "same-origin" });
    location.replace("/login");
  });
  $("pair").addEventListener("click", pair);
  $("rotate").addEventListener("click", rotate);
  $("doctor-run").addEventListener("click", () => refreshDoctor(false).catch((e) => { $("doctor-summary").textContent = e.message; }));
  $("doctor-fix").addEventListener("click", async () => {
    if (!(await confirmAction("Apply the safe fixes (file modes, leftover temporary files, expired pairing rows)? Nothing else is touched."))) return;
    await refreshDoctor(true).catch((e) => { $("doctor-summary").textContent = e.message; });
    refreshAudit().catch(() => {});
  });
  $("audit-filter").addEventListener("input", renderAudit);
  $("audit-refusals").addEventListener("change", renderAudit);
  setInterval(() => { if (ws && ws.readyState === 1) refreshDevices().catch(() => {}); }, 15000);
  connect();
})();
