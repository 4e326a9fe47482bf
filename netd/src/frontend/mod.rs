//! The ways into the engine. Each front end parses its own wire format into the engine's typed
//! requests ([`crate::engine::request`]) and maps the engine's typed errors back (to HTTP
//! statuses, to exit codes); the engine sees none of them.
//!
//! - [`http`]: the HTTP+JSON API on the daemon's Unix socket.
//! - [`cli`]: the `netd` command line: `netd daemon` (which runs [`daemon`]) and the client
//!   subcommands, which talk to the API.
//! - [`cni`]: the `netd-cni` plugin (podman and other CNI runtimes) and `netd cni install`.
pub mod cli;
pub mod cni;
pub mod daemon;
pub mod docker;
pub mod http;
