//! Docker 1.8's link allowances on a netd network with enable_icc=false, through the driver
//! option `netd.link` (dockerd's own `--link` never reaches a remote driver).

use super::*;

/// In CONTAINER, HOST:PORT answers a GET of the client-address CGI (busybox nc, 3 s).
fn connects(x: &DockerWorld, container: &str, host: &str, port: u16) -> bool {
    x.exec_get(container, host, port).contains("200 OK")
}

/// `docker run` refused: its error text.
fn run_refused(x: &DockerWorld, name: &str, opts: &[&str]) -> String {
    let out = x.docker.docker(&run_args(name, opts, &SLEEPER));
    assert!(
        !out.status.success(),
        "docker run {name} {opts:?} was not refused"
    );
    let _ = x.docker.docker(&["rm", "-f", name]);
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// An httpd on port 80 (the client-address CGI) and a second one on 8081, of which only 80
/// is exposed (`--expose 80`).
const TWO_SERVERS: [&str; 4] = [
    "/bin/busybox",
    "sh",
    "-c",
    "/bin/busybox httpd -p 8081 -h /www && exec /bin/busybox httpd -f -p 80 -h /www",
];

#[test]
fn dockerd_link_driver_option_allows_exposed_ports_on_an_icc_false_network() {
    let x = DockerWorld::new();
    x.network(
        "dkl",
        "10.79.8.0/24",
        &["-o", "com.docker.network.bridge.enable_icc=false"],
    );
    let on = |name: &str, extra: &str| format!("name=dkl,driver-opt=netd.name={name}{extra}");
    // The targets first: a link names a container netd has already.
    let db_net = on("db", "");
    x.docker.docker_ok(&run_args(
        "db",
        &["--network", &db_net, "--expose", "80"],
        &TWO_SERVERS,
    ));
    let cache_net = on("cache", "");
    x.run_httpd("cache", &["--network", &cache_net, "--expose", "80"]);
    // web serves its own exposed port 80, so only the link's direction keeps db out.
    let web_net = on("web", ",driver-opt=netd.link=db:dbalias+cache");
    x.run_httpd("web", &["--network", &web_net, "--expose", "80"]);
    let other_net = on("other", "");
    x.run_sleeper("other", &["--network", &other_net]);
    let (db, cache, web) = (x.docker_ip("db"), x.docker_ip("cache"), x.docker_ip("web"));

    // The exposed ports came through libnetwork's exposedports, the links through the option.
    let v = x.d.inspect("db");
    assert_eq!(
        v["exposed"],
        serde_json::json!([{"port": "80", "proto": "tcp"}]),
        "{v}"
    );
    let v = x.d.inspect("web");
    assert_eq!(
        v["links"],
        serde_json::json!([{"name": "db", "alias": "dbalias"}, {"name": "cache", "alias": "cache"}]),
        "{v}"
    );

    // web reaches db's and cache's exposed port, seen from its own address...
    assert_eq!(
        x.exec_peer("web", &db, 80),
        web,
        "web -> db:80 through the link"
    );
    assert_eq!(x.exec_peer("web", &cache, 80), web, "web -> cache:80");
    // ...but not db's unexposed port; nobody opens a connection back to web, and a
    // container without the link reaches nothing.
    assert!(
        connects(&x, "db", "127.0.0.1", 8081),
        "db's own 8081 serves"
    );
    assert!(
        !connects(&x, "web", &db, 8081),
        "web reached db's unexposed 8081"
    );
    assert!(
        !connects(&x, "db", &web, 80),
        "db opened a connection to web"
    );
    assert!(
        !connects(&x, "cache", &web, 80),
        "cache opened a connection to web"
    );
    assert!(
        !connects(&x, "other", &db, 80),
        "other (no link) reached db:80"
    );
    assert!(!connects(&x, "other", &web, 80), "other reached web:80");
    assert!(
        !connects(&x, "cache", &db, 80),
        "cache (no link) reached db:80"
    );

    // The alias is netd's allowance only: Docker writes the container's /etc/hosts and answers
    // its DNS itself, and knows no netd.link alias; the target's container name resolves
    // (Docker's embedded DNS on a user-defined network).
    let hosts = x
        .docker
        .docker_ok(&["exec", "web", "/bin/busybox", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("dbalias"), "/etc/hosts: {hosts}");
    let alias = x
        .docker
        .docker(&["exec", "web", "/bin/busybox", "nslookup", "dbalias"]);
    assert!(
        !String::from_utf8_lossy(&alias.stdout).contains(&db),
        "nslookup dbalias: {}",
        String::from_utf8_lossy(&alias.stdout)
    );
    let name = x
        .docker
        .docker_ok(&["exec", "web", "/bin/busybox", "nslookup", "db"]);
    assert!(name.contains(&db), "nslookup db: {name}");

    // Docker's own --link beside the option gives the alias in Docker's DNS.
    let web2_net = on("web2", ",driver-opt=netd.link=db");
    x.run_sleeper("web2", &["--network", &web2_net, "--link", "db:dbalias"]);
    let alias = x
        .docker
        .docker_ok(&["exec", "web2", "/bin/busybox", "nslookup", "dbalias"]);
    assert!(alias.contains(&db), "nslookup dbalias with --link: {alias}");
    assert_eq!(
        x.exec_peer("web2", "dbalias", 80),
        x.docker_ip("web2"),
        "web2 -> dbalias:80"
    );

    // Bad values and unknown targets are refused naming the option, with nothing made.
    let before = x.netd_endpoints();
    let e = run_refused(
        &x,
        "bad1",
        &["--network", &on("bad1", ",driver-opt=netd.link=db++cache")],
    );
    assert!(
        e.contains("driver-opt netd.link=db++cache: an empty link"),
        "{e}"
    );
    let e = run_refused(
        &x,
        "bad2",
        &["--network", &on("bad2", ",driver-opt=netd.link=nosuch:x")],
    );
    assert!(
        e.contains("driver-opt netd.link=nosuch:x: no container named nosuch is attached to netd"),
        "{e}"
    );

    // On a network with icc on, everything crosses (the oracle of the allowances above), and
    // a link to a container of another network is refused.
    x.network("dko", "10.79.9.0/24", &[]);
    x.docker.docker_ok(&run_args(
        "odb",
        &[
            "--network",
            "name=dko,driver-opt=netd.name=odb",
            "--expose",
            "80",
        ],
        &TWO_SERVERS,
    ));
    x.run_sleeper("ocli", &["--network", "name=dko,driver-opt=netd.name=ocli"]);
    let odb = x.docker_ip("odb");
    assert!(connects(&x, "ocli", &odb, 80), "icc on: ocli -> odb:80");
    assert!(connects(&x, "ocli", &odb, 8081), "icc on: ocli -> odb:8081");
    let e = run_refused(
        &x,
        "bad3",
        &["--network", &on("bad3", ",driver-opt=netd.link=odb")],
    );
    assert!(
        e.contains("driver-opt netd.link=odb:odb: odb is on network dko, not on network dkl"),
        "{e}"
    );
    assert_eq!(
        x.netd_endpoints().len(),
        before.len() + 2,
        "a refused run left an endpoint"
    );

    assert_no_iptables_or_proxy(&x.w.host);
    x.docker.docker_ok(&[
        "rm", "-f", "db", "cache", "web", "web2", "other", "odb", "ocli",
    ]);
    x.docker.docker_ok(&["network", "rm", "dkl", "dko"]);
    assert!(x.netd_endpoints().is_empty());
    assert!(x.w.host.links_with_prefix("veth").is_empty());
}
