//! `GET /v1/status` with many container veths (issue 13): every veth's netlink filters are
//! listed, and the answer must cost about the same per veth as one dump of them all.
//!
//! `status_lists_every_veths_filters` (30 endpoints) checks what the answer holds;
//! `status_cost_with_many_veths` (ignored: minutes of set-up) measures it:
//! `NETD_STATUS_VETHS=1000 cargo test -p netd-tests --test status_cost -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use netd_tests::{Daemon, World};

/// One request on the daemon's socket (no CLI process): (status code, body).
fn api(d: &Daemon, method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, String) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    d.http(method, path, &[], &body)
}

/// A daemon with `n` endpoints spread over the default network and `n / 900` created ones (a
/// Linux bridge holds at most 1,023 ports); the container namespaces live as long as `World`.
fn with_endpoints(w: &World, n: usize) -> (Daemon, Vec<netd_tests::Container>) {
    let d = w.daemon(&["--bip", "10.250.0.1/16"]);
    let nets: Vec<String> = (0..n / 900).map(|k| format!("sn{k}")).collect();
    for (k, net) in nets.iter().enumerate() {
        let subnet = format!("10.{}.0.0/22", 100 + k);
        d.netd_ok(&["network", "create", net, "--subnet", &subnet]);
    }
    let t = Instant::now();
    let mut cs = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("s{i}");
        let c = w.container(&name);
        let slot = i % (nets.len() + 1);
        let net = if slot == 0 {
            "bridge".to_string()
        } else {
            nets[slot - 1].clone()
        };
        let body = serde_json::json!({"name": name, "netns": c.path_str(), "net": net});
        let (st, b) = api(&d, "POST", "/v1/endpoints", Some(body));
        assert!((200..300).contains(&st), "attach {name}: {st} {b}");
        cs.push(c);
        if (i + 1) % 250 == 0 {
            eprintln!(
                "{} endpoints attached ({:.0} s)",
                i + 1,
                t.elapsed().as_secs_f64()
            );
        }
    }
    (d, cs)
}

fn status(d: &Daemon) -> (Duration, serde_json::Value) {
    let t = Instant::now();
    let (st, b) = api(d, "GET", "/v1/status", None);
    let took = t.elapsed();
    assert_eq!(st, 200, "{b}");
    (took, serde_json::from_str(&b).expect("status is JSON"))
}

/// Every endpoint's host veth shows netd's two netlink filters (ingress and egress) with the
/// program each runs, and the counters of the veths that carried traffic.
#[test]
fn status_lists_every_veths_filters() {
    let w = World::new();
    let (d, _cs) = with_endpoints(&w, 30);
    let (_, st) = status(&d);
    let progs = st["programs"].as_array().expect("programs");
    let eps: Vec<serde_json::Value> =
        serde_json::from_str(&api(&d, "GET", "/v1/endpoints", None).1).unwrap();
    assert_eq!(eps.len(), 30);
    for ep in &eps {
        let h = ep["host_ifname"].as_str().expect("host_ifname");
        let mut on: Vec<(String, String, String)> = progs
            .iter()
            .filter(|p| p["ifname"] == h)
            .map(|p| {
                (
                    p["direction"].as_str().unwrap().to_owned(),
                    p["program"].as_str().unwrap().to_owned(),
                    p["attach"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        on.sort();
        assert_eq!(
            on,
            [
                ("egress".into(), "to_container".into(), "netlink".into()),
                ("ingress".into(), "from_container".into(), "netlink".into()),
            ],
            "{h}: {progs:#?}"
        );
        let p = progs.iter().find(|p| p["ifname"] == h).unwrap();
        assert!(p["prog_id"].as_u64().is_some_and(|id| id > 0), "{p}");
        assert!(
            p["priority"].as_u64().is_some() && p["handle"].as_u64().is_some(),
            "{p}"
        );
    }
    // The uplink keeps its TCX links; nothing of someone else's runs ahead.
    assert!(
        progs.iter().any(|p| p["attach"] == "tcx"),
        "no TCX link: {progs:#?}"
    );
    assert_eq!(st["ahead"], serde_json::json!([]), "{st:#}");
}

/// Measures `GET /v1/status` (median of 5) with `NETD_STATUS_VETHS` endpoints (default 1,000).
#[test]
#[ignore = "measurement: minutes of set-up; run with --ignored --nocapture"]
fn status_cost_with_many_veths() {
    let n: usize = std::env::var("NETD_STATUS_VETHS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let w = World::new();
    let (d, _cs) = with_endpoints(&w, n);
    let mut ms: Vec<f64> = (0..5)
        .map(|_| {
            let (t, st) = status(&d);
            let progs = st["programs"].as_array().map_or(0, Vec::len);
            assert!(progs >= 2 * n, "{progs} programs listed for {n} endpoints");
            t.as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    eprintln!(
        "GET /v1/status with {n} endpoints: median {:.1} ms (min {:.1}, max {:.1})",
        ms[2], ms[0], ms[4]
    );
}
