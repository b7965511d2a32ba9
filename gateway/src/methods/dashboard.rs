//! `dashboard.login` (admin socket only): a one-time login link for the control page; and
//! `dashboard.pair` (control page): a pairing code with its URI and QR code.

use serde_json::{json, Value};

use super::Ctx;
use crate::protocol::frames::ErrorShape;
use crate::state::GatewayState;

/// The page's URL on the gateway's first loopback listener (`http://127.0.0.1:PORT`).
pub(super) fn page_base(state: &GatewayState) -> String {
    let url = state.url.lock().unwrap_or_else(|e| e.into_inner()).clone();
    url.replacen("ws://", "http://", 1)
}

/// `dashboard.login` → `{url, expiresAtMs}`: the code rides in the URL's fragment
/// (`/login#CODE`), which browsers never send to the server, and the login page removes it from
/// the address bar and history before it exchanges it (see `web::login`).
pub(super) fn login(state: &GatewayState, ctx: &Ctx, _p: &Value) -> Result<Value, ErrorShape> {
    let (code, expires) = state.web.mint_code();
    state.audit("dashboard.code.created", None, Some(ctx.actor), "");
    Ok(json!({
        "url": format!("{}/login#{code}", page_base(state)),
        "expiresAtMs": expires,
    }))
}

/// `dashboard.pair {name?, ttlMs?, requireApproval?}` → `pair.create`'s answer plus `uri` and
/// `qrSvg` (an SVG of the URI's QR code), when the gateway runs a tunnel.
pub(super) fn pair(state: &GatewayState, ctx: &Ctx, p: &Value) -> Result<Value, ErrorShape> {
    let Some(make) = state.web.pair_uri.get() else {
        return Err(ErrorShape::new(
            claw_proto::codes::UNAVAILABLE,
            "no tunnel or relay is running: start the gateway with `claw gateway run --tunnel` or `--relay URL`",
        ));
    };
    let mut v = super::pairing::create(state, ctx, p)?;
    let code = v["code"].as_str().unwrap_or_default().to_string();
    let expires = v["expiresAtMs"].as_u64().unwrap_or(0);
    let name = v["name"].as_str().map(str::to_string);
    let (uri, svg) = (make.0)(&code, expires, name.as_deref())
        .ok_or_else(|| ErrorShape::new("INTERNAL", "could not build the pairing URI"))?;
    // The bare code is in the URI; the page shows the URI only.
    if let Some(o) = v.as_object_mut() {
        o.remove("code");
    }
    v["uri"] = json!(uri);
    v["qrSvg"] = json!(svg);
    Ok(v)
}
