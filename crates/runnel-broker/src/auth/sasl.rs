//! The server side of SASL on SASL_PLAINTEXT and SASL_SSL listeners, as Kafka's
//! SaslServerAuthenticator runs it (KIP-43, KIP-152): before authentication a connection
//! may send only ApiVersions, SaslHandshake and SaslAuthenticate; a handshake names a
//! mechanism from `sasl.enabled.mechanisms`; SaslAuthenticate carries the mechanism's
//! tokens (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512). A SaslHandshake v0 client sends the
//! tokens as bare length-prefixed frames instead, which this also serves.
//!
//! Anything else, a failed authentication or a malformed token ends the connection; the
//! connection closes it after `connection.failed.authentication.delay.ms`. This module
//! decides; it never touches the socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::{decode_request, encode_response, ProtocolError};

use super::scram::{ScramCredential, ScramMechanism, ScramServer};
use super::KafkaPrincipal;
use crate::config::{BrokerConfig, ConfigError};
use crate::errors::KafkaError;
use crate::state::Broker;

/// Longest PLAIN token accepted.
const MAX_PLAIN_TOKEN: usize = 4096;

/// A SASL mechanism this broker can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    /// Unsecured JWS tokens only (for tests): see `oauthbearer`.
    OAuthBearer,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            "OAUTHBEARER" => Some(Mechanism::OAuthBearer),
            n => ScramMechanism::from_name(n).map(Mechanism::Scram),
        }
    }
}

/// The broker's SASL settings.
#[derive(Debug)]
pub struct SaslSettings {
    /// `sasl.enabled.mechanisms`, in the configured order.
    pub mechanisms: Vec<Mechanism>,
    /// `sasl.plain.users`: NAME → PASSWORD.
    plain_users: HashMap<String, String>,
    /// `connection.failed.authentication.delay.ms`.
    pub failed_delay: Duration,
    /// `connections.max.reauth.ms`: how long a session lasts (None: forever).
    pub session_lifetime: Option<Duration>,
}

impl SaslSettings {
    pub fn from_config(c: &BrokerConfig) -> Result<Self, ConfigError> {
        let mut mechanisms = Vec::new();
        for name in c.setting("sasl.enabled.mechanisms").split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let m = Mechanism::from_name(&name.to_ascii_uppercase()).ok_or_else(|| {
                ConfigError(format!(
                    "sasl.enabled.mechanisms: {name} is not supported (supported: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER with unsecured tokens)"
                ))
            })?;
            if !mechanisms.contains(&m) {
                mechanisms.push(m);
            }
        }
        let path = c.setting("sasl.plain.users");
        let plain_users = if path.is_empty() { HashMap::new() } else { read_plain_users(path)? };
        let delay: u64 = c.setting("connection.failed.authentication.delay.ms").parse().unwrap_or(100);
        let reauth: u64 = c.setting("connections.max.reauth.ms").parse().unwrap_or(0);
        let session_lifetime = (reauth > 0).then(|| Duration::from_millis(reauth));
        Ok(SaslSettings { mechanisms, plain_users, failed_delay: Duration::from_millis(delay), session_lifetime })
    }

    fn enabled(&self, name: &str) -> Option<Mechanism> {
        self.mechanisms.iter().copied().find(|m| m.name() == name)
    }

    fn names(&self) -> Vec<StrBytes> {
        self.mechanisms.iter().map(|m| StrBytes::from_static_str(m.name())).collect()
    }
}

/// `NAME=PASSWORD` lines; `#` starts a comment.
fn read_plain_users(path: &str) -> Result<HashMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("sasl.plain.users: cannot read {path}: {e}")))?;
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, password) = line
            .split_once('=')
            .ok_or_else(|| ConfigError(format!("sasl.plain.users: {path} line {}: expected NAME=PASSWORD", i + 1)))?;
        users.insert(name.trim().to_string(), password.to_string());
    }
    Ok(users)
}

/// What the connection does with one frame while authenticating.
pub enum Step {
    /// Not an authentication request (ApiVersions): serve it as usual.
    Serve,
    /// Write this frame and go on authenticating.
    Respond(Bytes),
    /// Write this frame; from now on the connection is this principal's.
    Authenticated(Bytes, KafkaPrincipal),
    /// Write this frame (if any), wait the failure delay, and close. The reason is logged.
    Failed(Option<Bytes>, String),
}

enum State {
    /// Waiting for SaslHandshake.
    Handshake,
    /// Handshake done: the next token starts the mechanism. `raw`: SaslHandshake v0,
    /// tokens come as bare frames.
    Token { mech: Mechanism, raw: bool },
    /// A SCRAM exchange waits for client-final.
    ScramFinal { server: ScramServer, raw: bool },
    Done,
}

/// One connection's authentication, from handshake to principal.
pub struct Authenticator {
    settings: Arc<SaslSettings>,
    state: State,
    /// Re-authentication (KIP-368) of a connection authenticated as this principal: other
    /// requests are served meanwhile, and the principal must stay the same.
    reauth: Option<KafkaPrincipal>,
}

impl Authenticator {
    pub fn new(settings: Arc<SaslSettings>) -> Self {
        Authenticator { settings, state: State::Handshake, reauth: None }
    }

    /// Re-authentication of a connection authenticated as `principal`.
    pub fn reauthenticate(settings: Arc<SaslSettings>, principal: KafkaPrincipal) -> Self {
        Authenticator { settings, state: State::Handshake, reauth: Some(principal) }
    }

    pub fn is_reauthentication(&self) -> bool {
        self.reauth.is_some()
    }

    /// How long a failed connection waits before it closes.
    pub fn failed_delay(&self) -> Duration {
        self.settings.failed_delay
    }

    /// Handles one frame received before authentication completed.
    pub async fn step(&mut self, frame: &Bytes, broker: &Arc<Broker>) -> Step {
        if let State::Token { raw: true, .. } | State::ScramFinal { raw: true, .. } = self.state {
            return match self.token(frame.clone(), broker).await {
                Ok((out, principal)) => {
                    let framed = raw_frame(&out);
                    match principal {
                        Some(p) => Step::Authenticated(framed, p),
                        None => Step::Respond(framed),
                    }
                }
                Err(reason) => Step::Failed(None, reason),
            };
        }
        let req = match decode_request(frame.clone(), crate::handlers::supported) {
            Ok(req) => req,
            // The connection answers a too-new ApiVersions itself.
            Err(ProtocolError::UnsupportedVersion { key, .. }) if key == ApiKey::ApiVersions as i16 => return Step::Serve,
            Err(e) => return Step::Failed(None, format!("bad request before authentication: {e}")),
        };
        let (version, correlation_id) = (req.header.request_api_version, req.header.correlation_id);
        let encode = |key: ApiKey, body: ResponseKind| encode_response(key, version, correlation_id, &body).ok();
        match (req.body, &self.state) {
            (RequestKind::ApiVersions(_), _) => Step::Serve,
            (RequestKind::SaslHandshake(r), State::Handshake) => {
                let resp = SaslHandshakeResponse::default().with_mechanisms(self.settings.names());
                match self.settings.enabled(r.mechanism.as_str()) {
                    Some(mech) => {
                        self.state = State::Token { mech, raw: version == 0 };
                        match encode(ApiKey::SaslHandshake, ResponseKind::SaslHandshake(resp)) {
                            Some(b) => Step::Respond(b),
                            None => Step::Failed(None, "could not encode SaslHandshake".into()),
                        }
                    }
                    None => {
                        let resp = resp.with_error_code(KafkaError::UnsupportedSaslMechanism.code());
                        let reason = format!("SASL mechanism {:?} is not enabled", escape(r.mechanism.as_str()));
                        Step::Failed(encode(ApiKey::SaslHandshake, ResponseKind::SaslHandshake(resp)), reason)
                    }
                }
            }
            (RequestKind::SaslAuthenticate(r), State::Token { raw: false, .. } | State::ScramFinal { raw: false, .. }) => {
                let SaslAuthenticateRequest { auth_bytes, .. } = r;
                let mech = self.mechanism_name();
                let outcome = match self.token(auth_bytes, broker).await {
                    Ok((_, Some(p))) if self.reauth.as_ref().is_some_and(|was| *was != p) => {
                        Err(format!("re-authentication as {p} on a connection of {}", self.reauth.as_ref().map(ToString::to_string).unwrap_or_default()))
                    }
                    other => other,
                };
                match outcome {
                    Ok((out, principal)) => {
                        let mut resp = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(out));
                        // v1+ tells the client when its session ends (KIP-368).
                        if let (Some(_), Some(lifetime), true) = (&principal, self.settings.session_lifetime, version >= 1) {
                            resp.session_lifetime_ms = lifetime.as_millis() as i64;
                        }
                        let Some(b) = encode(ApiKey::SaslAuthenticate, ResponseKind::SaslAuthenticate(resp)) else {
                            return Step::Failed(None, "could not encode SaslAuthenticate".into());
                        };
                        match principal {
                            Some(p) => Step::Authenticated(b, p),
                            None => Step::Respond(b),
                        }
                    }
                    Err(reason) => {
                        let message = format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {mech}");
                        let resp = SaslAuthenticateResponse::default()
                            .with_error_code(KafkaError::SaslAuthenticationFailed.code())
                            .with_error_message(Some(StrBytes::from_string(message)));
                        Step::Failed(encode(ApiKey::SaslAuthenticate, ResponseKind::SaslAuthenticate(resp)), reason)
                    }
                }
            }
            (RequestKind::SaslHandshake(_), _) => {
                let resp = SaslHandshakeResponse::default()
                    .with_error_code(KafkaError::IllegalSaslState.code())
                    .with_mechanisms(self.settings.names());
                Step::Failed(encode(ApiKey::SaslHandshake, ResponseKind::SaslHandshake(resp)), "SaslHandshake out of order".into())
            }
            (RequestKind::SaslAuthenticate(_), _) => {
                let resp = SaslAuthenticateResponse::default()
                    .with_error_code(KafkaError::IllegalSaslState.code())
                    .with_error_message(Some(StrBytes::from_static_str("SaslAuthenticate before SaslHandshake")));
                Step::Failed(encode(ApiKey::SaslAuthenticate, ResponseKind::SaslAuthenticate(resp)), "SaslAuthenticate before SaslHandshake".into())
            }
            // While re-authenticating, the connection stays authenticated.
            (_, _) if self.reauth.is_some() => Step::Serve,
            (_, _) => Step::Failed(None, format!("{:?} request before authentication", req.api_key)),
        }
    }

    fn mechanism_name(&self) -> &'static str {
        match &self.state {
            State::Token { mech, .. } => mech.name(),
            State::ScramFinal { server, .. } => server.mechanism().name(),
            _ => "",
        }
    }

    /// Runs one token of the mechanism: the answer, and the principal once authenticated.
    async fn token(&mut self, token: Bytes, broker: &Arc<Broker>) -> Result<(Vec<u8>, Option<KafkaPrincipal>), String> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Token { mech: Mechanism::Plain, .. } => {
                let user = self.check_plain(token, broker).await?;
                Ok((Vec::new(), Some(KafkaPrincipal::user(user))))
            }
            State::Token { mech: Mechanism::OAuthBearer, .. } => {
                let user = super::oauthbearer::authenticate(&token, crate::now_ms()).map_err(|e| format!("OAUTHBEARER: {e}"))?;
                Ok((Vec::new(), Some(KafkaPrincipal::user(user))))
            }
            State::Token { mech: Mechanism::Scram(m), raw } => {
                let mut server = ScramServer::new(m);
                let out = server
                    .client_first(&token, |user| broker.scram_credential(user, m))
                    .map_err(|e| format!("{} client-first: {e}", m.name()))?;
                self.state = State::ScramFinal { server, raw };
                Ok((out, None))
            }
            State::ScramFinal { mut server, .. } => {
                let m = server.mechanism();
                let (out, user) = server.client_final(&token).map_err(|e| format!("{} client-final: {e}", m.name()))?;
                Ok((out, Some(KafkaPrincipal::user(user))))
            }
            State::Handshake | State::Done => Err("token out of order".into()),
        }
    }

    /// PLAIN (RFC 4616): `[authzid] NUL authcid NUL password`, checked against
    /// `sasl.plain.users`, else the user's SCRAM credentials.
    async fn check_plain(&self, token: Bytes, broker: &Arc<Broker>) -> Result<String, String> {
        if token.len() > MAX_PLAIN_TOKEN {
            return Err("PLAIN token too long".into());
        }
        let mut parts = token.split(|b| *b == 0);
        let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("malformed PLAIN token".into());
        };
        let (Ok(authzid), Ok(user)) = (std::str::from_utf8(authzid), std::str::from_utf8(user)) else {
            return Err("PLAIN names are not UTF-8".into());
        };
        if user.is_empty() || password.is_empty() {
            return Err("PLAIN token lacks a username or password".into());
        }
        if !authzid.is_empty() && authzid != user {
            return Err("PLAIN authorization id differs from the username".into());
        }
        if let Some(expected) = self.settings.plain_users.get(user) {
            if super::constant_time_eq(expected.as_bytes(), password) {
                return Ok(user.to_string());
            }
        }
        let creds: Vec<(ScramMechanism, ScramCredential)> = ScramMechanism::ALL
            .into_iter()
            .filter_map(|m| broker.scram_credential(user, m).map(|c| (m, c)))
            .collect();
        let password = password.to_vec();
        // PBKDF2 costs milliseconds: off the async workers.
        let ok = crate::handlers::blocking(move || creds.iter().any(|(m, c)| c.matches_password(*m, &password))).await;
        if ok {
            Ok(user.to_string())
        } else {
            Err(format!("PLAIN: unknown user or wrong password for {:?}", escape(user)))
        }
    }
}

/// A bare length-prefixed frame (SaslHandshake v0 tokens).
fn raw_frame(bytes: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + bytes.len());
    b.put_i32(bytes.len() as i32);
    b.put_slice(bytes);
    b.freeze()
}

/// Client-chosen strings are data: printable and bounded in logs.
pub fn escape(s: &str) -> String {
    s.chars().take(128).flat_map(char::escape_debug).collect()
}
