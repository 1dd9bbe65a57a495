//! SASL/OAUTHBEARER (RFC 7628, Kafka's KIP-255) with unsecured JWS tokens only — Kafka's
//! `OAuthBearerUnsecuredValidator`, meant for tests and development: the token's header
//! must say `"alg":"none"`, its `sub` claim names the principal, `exp` must lie in the
//! future (and after `iat`). Signed tokens (JWKS validation) are not supported. Off unless
//! `sasl.enabled.mechanisms` names OAUTHBEARER.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;

/// Longest client message accepted.
const MAX_MESSAGE: usize = 16 * 1024;

/// Checks the client's initial response (`gs2-header \x01auth=Bearer TOKEN\x01…\x01\x01`)
/// at `now_ms`; returns the principal name (the token's `sub`).
pub fn authenticate(msg: &[u8], now_ms: i64) -> Result<String, String> {
    if msg.len() > MAX_MESSAGE {
        return Err("OAUTHBEARER message too long".into());
    }
    let msg = std::str::from_utf8(msg).map_err(|_| "OAUTHBEARER message is not UTF-8")?;
    let (gs2, rest) = msg.split_once('\x01').ok_or("OAUTHBEARER message lacks key/value pairs")?;
    let mut gs2_parts = gs2.splitn(3, ',');
    let (flag, authzid, tail) = (gs2_parts.next(), gs2_parts.next(), gs2_parts.next());
    if !matches!(flag, Some("n" | "y")) || tail != Some("") {
        return Err("OAUTHBEARER message has a bad GS2 header".into());
    }
    let authzid = match authzid {
        Some("") => None,
        Some(a) => Some(a.strip_prefix("a=").ok_or("OAUTHBEARER message has a bad authzid")?),
        None => return Err("OAUTHBEARER message has a bad GS2 header".into()),
    };
    let pairs = rest.strip_suffix("\x01\x01").ok_or("OAUTHBEARER message does not end with \\x01\\x01")?;
    let mut token = None;
    for pair in pairs.split('\x01') {
        let (k, v) = pair.split_once('=').ok_or("OAUTHBEARER key/value pair without '='")?;
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err("OAUTHBEARER key is not alphabetic".into());
        }
        if k == "auth" {
            let t = v.strip_prefix("Bearer ").ok_or("OAUTHBEARER auth value is not 'Bearer TOKEN'")?;
            token = Some(t.trim());
        }
    }
    let token = token.ok_or("OAUTHBEARER message lacks auth=Bearer TOKEN")?;
    let sub = validate_unsecured(token, now_ms)?;
    if authzid.is_some_and(|a| a != sub) {
        return Err("OAUTHBEARER authorization id differs from the token's subject".into());
    }
    Ok(sub)
}

/// An unsecured JWS (`header.payload.`): alg none, `sub`, unexpired `exp`.
fn validate_unsecured(token: &str, now_ms: i64) -> Result<String, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(""), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("the token is not an unsecured JWS (header.payload. with an empty signature)".into());
    };
    let json = |part: &str, what: &str| -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let bytes = B64URL.decode(part.trim_end_matches('=')).map_err(|_| format!("the token's {what} is not base64url"))?;
        match serde_json::from_slice(&bytes) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            _ => Err(format!("the token's {what} is not a JSON object")),
        }
    };
    let header = json(header, "header")?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("none") {
        return Err("the token is signed (only unsecured tokens, alg none, are supported)".into());
    }
    let claims = json(payload, "payload")?;
    let sub = claims.get("sub").and_then(|s| s.as_str()).filter(|s| !s.trim().is_empty()).ok_or("the token has no sub claim")?;
    let seconds = |name: &str| claims.get(name).map(|v| v.as_f64().ok_or(format!("the token's {name} claim is not a number")));
    let exp = seconds("exp").ok_or("the token has no exp claim")??;
    if (exp * 1000.0) as i64 <= now_ms {
        return Err("the token has expired".into());
    }
    if let Some(iat) = seconds("iat").transpose()? {
        if iat > exp {
            return Err("the token's iat is after its exp".into());
        }
    }
    Ok(sub.to_string())
}

/// An unsecured token for `sub` expiring at `exp` seconds (for tests and tools).
pub fn unsecured_token(sub: &str, exp: i64) -> String {
    let header = B64URL.encode(br#"{"alg":"none"}"#);
    let payload = B64URL.encode(serde_json::json!({ "sub": sub, "exp": exp, "iat": exp - 3600 }).to_string());
    format!("{header}.{payload}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn msg(token: &str) -> Vec<u8> {
        format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes()
    }

    #[test]
    fn unsecured_tokens_are_checked_as_kafka_does() {
        let good = unsecured_token("alice", NOW / 1000 + 60);
        assert_eq!(authenticate(&msg(&good), NOW).unwrap(), "alice");
        assert_eq!(authenticate(format!("n,a=alice,\x01host=x\x01auth=Bearer {good}\x01\x01").as_bytes(), NOW).unwrap(), "alice");
        assert!(authenticate(format!("n,a=bob,\x01auth=Bearer {good}\x01\x01").as_bytes(), NOW).is_err());
        let expired = unsecured_token("alice", NOW / 1000 - 1);
        let signed = format!("{}.{}.sig", B64URL.encode(br#"{"alg":"HS256"}"#), B64URL.encode(br#"{"sub":"a","exp":9999999999}"#));
        let hs256_unsigned = format!("{}.{}.", B64URL.encode(br#"{"alg":"HS256"}"#), B64URL.encode(br#"{"sub":"a","exp":9999999999}"#));
        let no_sub = format!("{}.{}.", B64URL.encode(br#"{"alg":"none"}"#), B64URL.encode(br#"{"exp":9999999999}"#));
        let no_exp = format!("{}.{}.", B64URL.encode(br#"{"alg":"none"}"#), B64URL.encode(br#"{"sub":"a"}"#));
        for bad in [expired, signed, hs256_unsigned, no_sub, no_exp, "x.y.".into(), "".into(), "a.b".into()] {
            assert!(authenticate(&msg(&bad), NOW).is_err(), "{bad}");
        }
        for bad in [&b""[..], b"n,,", b"n,,\x01auth=Bearer x\x01", b"p=x,,\x01auth=Bearer x\x01\x01", b"n,,\x01\x01", b"\xff"] {
            assert!(authenticate(bad, NOW).is_err());
        }
    }
}
