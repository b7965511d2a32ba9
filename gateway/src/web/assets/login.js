// Exchanges the one-time code in the URL's fragment for a session cookie. The fragment never
// reaches the server; it is removed from the address bar and the history entry before the code
// is sent (in a POST body), so no usable link stays behind.
"use strict";
(function () {
  const status = document.getElementById("login-status");
  const code = location.hash.slice(1);
  history.replaceState(null, "", "/login");
  if (!code) {
    status.textContent = "No login code in this link.";
    return;
  }
  fetch("/api/login", {
    method: "POST",
    headers: { "content-type": "text/plain" },
    body: code,
    credentials: "same-origin",
  }).then(async (r) => {
    if (r.ok) {
      location.replace("/");
    } else {
      status.textContent = await r.text();
      status.className = "error";
    }
  }).catch((e) => {
    status.textContent = "The gateway did not answer: " + e;
    status.className = "error";
  });
})();
