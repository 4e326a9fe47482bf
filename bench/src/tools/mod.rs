//! The load generators, each a server started inside a namespace and a client whose output is
//! parsed into named values: [`iperf`] (throughput, UDP packet rate), [`sockperf`] (ping-pong
//! latency), [`connrate`] (new connections per second, this package's `netd-connrate`).

pub mod connrate;
pub mod iperf;
pub mod sockperf;

use std::collections::BTreeMap;

/// Named results of one client run, e.g. `{"gbps": 9.4}`.
pub type Values = BTreeMap<String, f64>;
