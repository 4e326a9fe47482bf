//! `--metrics-addr`: the Prometheus endpoint, scraped inside the test's host namespace and
//! read with a real Prometheus text parser (prometheus-parse).

use std::io::{Read, Write};
use std::time::Duration;

use netd_tests::dataplane::{stats, tcp_blocked};
use netd_tests::world::HOST_UPLINK_IP;
use netd_tests::{BIP, Daemon, Netns, World, in_netns, tcp_request_until, tcp_server};
use prometheus_parse::{Scrape, Value};

const T: Duration = Duration::from_secs(5);
const ADDR: &str = "127.0.0.1:9423";

/// GET `path` on the metrics address from inside `host`: (status line, body).
fn get(host: &Netns, path: &str) -> (String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: netd\r\n\r\n");
    in_netns(host, move || {
        let mut s = std::net::TcpStream::connect(ADDR)?;
        s.set_read_timeout(Some(T))?;
        s.write_all(req.as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        Ok((
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        ))
    })
    .expect("scrape")
}

fn scrape(host: &Netns) -> (Scrape, String) {
    let (status, body) = get(host, "/metrics");
    assert!(status.contains(" 200 "), "{status}\n{body}");
    let s = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parse");
    (s, body)
}

fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(b) => b.iter().map(|c| c.count).fold(0.0, f64::max),
            Value::Summary(_) => f64::NAN,
        })
}

#[test]
fn metrics_endpoint_reports_drops_ports_conntrack_maps_and_latency() {
    let w = World::new();
    let d: Daemon = w.daemon(&["--bip", BIP, "--metrics-addr", ADDR, "--ct-max", "4096"]);
    let web = w.container("web");
    d.attach("web", &web, &["-p", "8080:80"]);
    d.netd_ok(&["publish", "web", "8081:81"]);
    let _srv = tcp_server(&web, 80);
    for _ in 0..3 {
        tcp_request_until(&w.outside, &format!("{HOST_UPLINK_IP}:8080"), T).unwrap();
    }
    // A source filter drop, so that a drop reason has a count.
    d.netd_ok(&["filter", "deny", "198.51.100.0/24"]);
    assert!(tcp_blocked(&w.outside, &format!("{HOST_UPLINK_IP}:8080")));
    let st = stats(&d);
    let (s, text) = scrape(&w.host);

    // Names and types follow Prometheus conventions: netd_ prefix, snake case, counters end in
    // _total, durations in seconds, every family documented.
    for x in &s.samples {
        let m = &x.metric;
        assert!(
            m.starts_with("netd_") && m.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "bad metric name {m}"
        );
        if let Value::Counter(_) = x.value {
            assert!(m.ends_with("_total"), "counter {m} does not end in _total");
        }
        if let Value::Histogram(_) = x.value {
            assert!(m.ends_with("_seconds"), "histogram {m} is not in seconds");
        }
        let family = m.trim_end_matches("_sum").trim_end_matches("_count");
        assert!(
            s.docs.contains_key(m) || s.docs.contains_key(family),
            "{m} has no HELP"
        );
    }

    // Drops per reason: the same numbers as `netd stats`, and the filter drop is there.
    let drops = st["drops"].as_array().unwrap();
    assert!(
        drops.iter().any(|d| d["packets"].as_u64().unwrap() > 0),
        "{st}"
    );
    for dr in drops {
        let reason = dr["reason"].as_str().unwrap();
        let want = dr["packets"].as_u64().unwrap() as f64;
        let got = value(&s, "netd_drops_total", &[("reason", reason)]);
        assert_eq!(got, Some(want), "drops for {reason}\n{text}");
    }
    // Per published port.
    let lbl = [
        ("container", "web"),
        ("proto", "tcp"),
        ("host_port", "8080"),
        ("container_port", "80"),
    ];
    let pk = value(&s, "netd_published_port_packets_total", &lbl).expect("port packets");
    let by = value(&s, "netd_published_port_bytes_total", &lbl).expect("port bytes");
    assert!(
        pk >= 6.0,
        "3 TCP exchanges are at least 6 packets, got {pk}\n{text}"
    );
    assert!(by > pk * 40.0, "bytes {by} for {pk} packets");
    assert_eq!(
        value(
            &s,
            "netd_published_port_packets_total",
            &[("host_port", "8081")]
        ),
        Some(0.0)
    );
    // Conntrack usage and capacity, map fill levels.
    let ct = value(&s, "netd_conntrack_entries", &[]).expect("ct entries");
    assert!(ct >= 2.0, "ct entries {ct}");
    assert_eq!(value(&s, "netd_conntrack_max_entries", &[]), Some(4096.0));
    assert_eq!(
        value(&s, "netd_map_entries", &[("map", "NETD_CT")]),
        Some(ct)
    );
    assert_eq!(
        value(&s, "netd_map_max_entries", &[("map", "NETD_CT")]),
        Some(4096.0)
    );
    assert!(value(&s, "netd_map_entries", &[("map", "NETD_PORTS")]).unwrap() >= 2.0);
    assert!(value(&s, "netd_conntrack_evictions_total", &[]).is_some());
    // One attach and one publish were timed.
    assert_eq!(
        value(&s, "netd_attach_duration_seconds", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&s, "netd_publish_duration_seconds", &[]),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("netd_attach_duration_seconds_bucket{le=\"+Inf\"} 1"));
    assert!(text.contains("netd_attach_duration_seconds_count 1"));
    assert_eq!(value(&s, "netd_endpoints", &[]), Some(1.0));
    // Only /metrics is served.
    let (status, body) = get(&w.host, "/v1/status");
    assert!(status.contains(" 404 "), "{status}");
    assert!(body.contains("only GET /metrics"), "{body}");
}

/// Without --metrics-addr nothing listens.
#[test]
fn metrics_are_off_by_default() {
    let w = World::new();
    let _d = w.daemon(&["--bip", BIP]);
    let r = in_netns(&w.host, || Ok(std::net::TcpStream::connect(ADDR).is_ok())).unwrap();
    assert!(!r, "something listens on {ADDR} without --metrics-addr");
}
