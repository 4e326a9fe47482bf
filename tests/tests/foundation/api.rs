//! Published ports and endpoints as listed by the API.

use super::*;

#[test]
fn published_ports_are_listed() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("web");
    let ep = d.attach("web", &c, &["-p", "8080:80", "-p", "127.0.0.1:5353:53/udp"]);
    let mut ports: Vec<String> = ep["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{} {}:{}",
                p["container_port"],
                s(&p["proto"]),
                s(&p["host_ip"]),
                p["host_port"]
            )
        })
        .collect();
    ports.sort();
    assert_eq!(ports, vec!["53/udp 127.0.0.1:5353", "80/tcp 0.0.0.0:8080"]);
    let out = d.netd_ok(&["port", "web", "80"]);
    assert_eq!(out.trim(), "0.0.0.0:8080");
    let out = d.netd_ok(&["port", "web"]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec!["53/udp -> 127.0.0.1:5353", "80/tcp -> 0.0.0.0:8080"]
    );
}

#[test]
fn http_api_lists_endpoints_as_json() {
    let w = World::new();
    let d = w.daemon(&["--bip", BIP]);
    let c = w.container("c1");
    d.attach("c1", &c, &[]);
    let sock = d.sock();
    let out = netd_tests::cmd_ok(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        "--unix-socket",
        sock.to_str().unwrap(),
        "http://netd/v1/endpoints",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let list = v
        .as_array()
        .or_else(|| v["endpoints"].as_array())
        .unwrap_or_else(|| panic!("not a list of endpoints: {v}"));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "c1");
    assert_eq!(list[0]["ip"], "172.30.0.2");
    let one = netd_tests::cmd_ok(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        "--unix-socket",
        sock.to_str().unwrap(),
        "http://netd/v1/endpoints/c1",
    ]);
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["mac"], "02:42:ac:1e:00:02");
    let status = netd_tests::cmd_ok(&[
        "curl",
        "-sS",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--unix-socket",
        sock.to_str().unwrap(),
        "http://netd/v1/endpoints/nosuch",
    ]);
    assert_eq!(status, "404");
}
