//! The HTTP front end: HTTP/1.1 + JSON on a Unix socket (`curl --unix-socket SOCK
//! http://netd/v1/...`). [`convert`] parses request bodies into the engine's typed requests,
//! [`status_of`] maps the engine's errors to HTTP statuses, [`wire`] is the HTTP framing.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | /v1/status | | [`types::Status`] |
//! | GET | /v1/endpoints | | list of [`types::EndpointView`] |
//! | POST | /v1/endpoints | [`types::AttachRequest`] | [`types::EndpointView`] (201) |
//! | GET | /v1/endpoints/NAME | | [`types::EndpointView`] |
//! | DELETE | /v1/endpoints/NAME | | 204 |
//! | POST | /v1/endpoints/NAME/ports | [`types::PublishRequest`] | [`types::EndpointView`] |
//! | GET | /v1/networks | | list of [`types::NetworkView`] |
//! | POST | /v1/networks | [`types::NetworkCreateRequest`] | [`types::NetworkView`] (201) |
//! | GET | /v1/networks/NAME | | [`types::NetworkView`] |
//! | DELETE | /v1/networks/NAME | | 204 |
//! | POST | /v1/p2p | [`types::P2pRequest`] | 204 |
//! | GET | /v1/filters | | allow and deny lists |
//! | POST | /v1/filters | [`types::FilterRequest`] | allow and deny lists |
//! | GET | /v1/stats | | [`types::StatsView`] |
//! | GET | /v1/ct?ip=&proto=&port= | | tracked flows |
//! | GET | /v1/monitor?reason=&container=&port= | | NDJSON stream of `ops::monitor::event::Line` until the client closes |
//!
//! Errors answer 4xx/5xx with `{"message": "..."}`.
pub mod convert;
pub mod server;
pub mod starting;
pub mod types;
pub mod wire;

use crate::engine::EngineError;

/// The HTTP status of an engine error.
pub fn status_of(e: &EngineError) -> u16 {
    match e {
        EngineError::Invalid(_) => 400,
        EngineError::NotFound(_) => 404,
        EngineError::Conflict(_) => 409,
        EngineError::Internal(_) => 500,
    }
}
