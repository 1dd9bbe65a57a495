//! Kafka error codes used by the handlers, by name. Handlers map their failures to these in
//! one place each (see each handler's `error_code` function).

pub use kafka_protocol::error::ResponseError as KafkaError;

/// The wire code of a Kafka error.
pub fn code(e: KafkaError) -> i16 {
    e.code()
}

