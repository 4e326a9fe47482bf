//! The API: HTTP/1.1 + JSON on a Unix socket (`curl --unix-socket SOCK http://netd/v1/...`).
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | /v1/status | | [`types::Status`] |
//! | GET | /v1/endpoints | | list of [`types::EndpointView`] |
//! | POST | /v1/endpoints | [`types::AttachRequest`] | [`types::EndpointView`] (201) |
//! | GET | /v1/endpoints/NAME | | [`types::EndpointView`] |
//! | DELETE | /v1/endpoints/NAME | | 204 |
//! | POST | /v1/endpoints/NAME/ports | [`types::PublishRequest`] | [`types::EndpointView`] |
//! | POST | /v1/p2p | [`types::P2pRequest`] | 204 |
//! | GET | /v1/filters | | allow and deny lists |
//! | POST | /v1/filters | [`types::FilterRequest`] | allow and deny lists |
//! | GET | /v1/stats | | [`types::StatsView`] |
//! | GET | /v1/ct?ip=&proto=&port= | | tracked flows |
//!
//! Errors answer 4xx/5xx with `{"message": "..."}`.
pub mod client;
pub mod http;
pub mod server;
pub mod types;
