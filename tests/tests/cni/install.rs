//! netd cni-install writes the plugin and the conflist.

use super::*;

#[test]
fn cni_install_writes_plugin_and_conflist() {
    let tmp = TempDir::new();
    let bin_dir = tmp.path().join("bin");
    let conf_dir = tmp.path().join("net.d");
    let netd = netd_bin();
    let run = |extra: &[&str]| {
        let mut c = Command::new(&netd);
        c.args(["-H", "unix:///run/netdt/x.sock", "cni", "install", "--dir"])
            .arg(&bin_dir)
            .arg("--conf-dir")
            .arg(&conf_dir)
            .args(["--network", "blue"])
            .args(extra);
        c.output().unwrap()
    };
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value =
        serde_json::from_str(&std::fs::read_to_string(conf_dir.join("blue.conflist")).unwrap())
            .unwrap();
    assert_eq!(
        list,
        json!({"cniVersion": "0.4.0", "name": "blue", "plugins": [{"type": "netd-cni",
            "network": "blue", "socket": "unix:///run/netdt/x.sock",
            "capabilities": {"portMappings": true, "ips": true, "mac": true}}]})
    );
    let installed = bin_dir.join("netd-cni");
    let v = cmd_ok(&[
        "sh",
        "-c",
        &format!(
            "echo '{{\"cniVersion\":\"1.0.0\"}}' | CNI_COMMAND=VERSION {}",
            installed.display()
        ),
    ]);
    assert!(v.contains("1.1.0"), "{v}");
    // Not replaced without --force.
    let out = run(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert!(run(&["--force"]).status.success());
}
