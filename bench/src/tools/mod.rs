//! The load generators, each a server started inside a namespace and a client whose output is
//! parsed into named values: [`iperf`] (throughput, UDP packet rate), [`sockperf`] (ping-pong
//! latency), [`connrate`] (new connections per second, this package's `netd-connrate`).

pub mod connrate;
pub mod iperf;
pub mod sockperf;

use std::collections::BTreeMap;

/// Named results of one client run, e.g. `{"gbps": 9.4}`.
pub type Values = BTreeMap<String, f64>;

/// `ip:port`, or `[ip]:port` for an IPv6 address (the form `SocketAddr` parses).
pub fn sock_addr(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv6_addresses_get_brackets() {
        assert_eq!(super::sock_addr("198.51.100.1", 80), "198.51.100.1:80");
        assert_eq!(
            super::sock_addr("2001:db8:ff::1", 80),
            "[2001:db8:ff::1]:80"
        );
        let a: std::net::SocketAddr = super::sock_addr("2001:db8:ff::1", 80).parse().unwrap();
        assert!(a.is_ipv6());
    }
}
