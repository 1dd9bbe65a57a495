//! SaslHandshake (key 17) v0–v1 and SaslAuthenticate (key 36) v0–v2 as handlers: on SASL
//! listeners the connection runs authentication itself (`auth::sasl`) before any request
//! reaches a handler, so a handshake or token arriving here came after authentication or
//! on a listener without SASL, and is answered ILLEGAL_SASL_STATE as Kafka does.

use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse};

use super::{sb, Ctx};
use crate::errors::{code, KafkaError};

pub const HANDSHAKE_MIN_VERSION: i16 = 0;
pub const HANDSHAKE_MAX_VERSION: i16 = 1;
pub const AUTHENTICATE_MIN_VERSION: i16 = 0;
pub const AUTHENTICATE_MAX_VERSION: i16 = 2;

pub fn handshake(_ctx: &Ctx, _req: SaslHandshakeRequest) -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(code(KafkaError::IllegalSaslState))
}

pub fn authenticate(ctx: &Ctx, _req: SaslAuthenticateRequest) -> SaslAuthenticateResponse {
    let why = if ctx.session.protocol.is_sasl() {
        "the connection is already authenticated"
    } else {
        "this listener does not use SASL"
    };
    SaslAuthenticateResponse::default()
        .with_error_code(code(KafkaError::IllegalSaslState))
        .with_error_message(Some(sb(why)))
}
