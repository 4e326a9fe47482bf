//! `/etc/netd/daemon.json` (`--config-file`): the same settings as `netd daemon`'s flags, keyed
//! by their long names (`"bip"`, `"dns"`, `"ip-masq"`, ...), as Docker's daemon.json.
//!
//! The file is laid over the command line by giving each of its values to clap as the flag it
//! names, so a value in the file is checked by exactly the parser that checks the flag. As in
//! Docker, a setting given both as a flag and in the file is refused, and an unknown key or a
//! bad value is an error that names the key and the file.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use crate::frontend::cli::args::{Cli, Command, DaemonArgs};

/// Where `netd daemon` looks for its file when `--config-file` is not given (a missing file at
/// this path is not an error).
pub const DEFAULT_CONFIG_FILE: &str = "/etc/netd/daemon.json";

/// Flags that cannot be set from the file.
const NOT_IN_FILE: &[&str] = &["config-file", "help"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("config file {0} must hold one JSON object of settings")]
    NotObject(PathBuf),
    #[error("config file {path}: unknown keys (not netd daemon flags): {}", keys.join(", "))]
    Unknown { path: PathBuf, keys: Vec<String> },
    #[error(
        "the following settings are given both as a flag and in the config file {path}: {}",
        details.join(", ")
    )]
    Conflict { path: PathBuf, details: Vec<String> },
    #[error("config file {path}: invalid value for {key:?}: {msg}")]
    BadValue {
        path: PathBuf,
        key: String,
        msg: String,
    },
    #[error("{0}")]
    Usage(String),
}

/// The daemon's settings: the command line with the config file laid over it.
#[derive(Debug, Clone)]
pub struct Layered {
    pub args: DaemonArgs,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// Keys the file set.
    pub file_keys: BTreeSet<String>,
}

/// First line of a clap error, without its `error: ` prefix.
fn clap_line(e: &clap::Error) -> String {
    let s = e.render().to_string();
    let line = s.lines().next().unwrap_or("").trim();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

fn daemon_matches(argv: &[OsString]) -> Result<clap::ArgMatches, ConfigFileError> {
    let m = Cli::command()
        .try_get_matches_from(argv)
        .map_err(|e| ConfigFileError::Usage(clap_line(&e)))?;
    match m.subcommand() {
        Some(("daemon", dm)) => Ok(dm.clone()),
        _ => Err(ConfigFileError::Usage(
            "not a `netd daemon` command line".into(),
        )),
    }
}

/// A JSON scalar as the text a flag would take.
fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads `argv` (a whole `netd ... daemon ...` command line) and the config file it names (or
/// the default one, if it exists) into the daemon's settings.
pub fn load(argv: &[OsString]) -> Result<Layered, ConfigFileError> {
    let dm = daemon_matches(argv)?;
    let explicit = dm.value_source("config_file") == Some(ValueSource::CommandLine);
    let path = dm
        .get_one::<PathBuf>("config_file")
        .cloned()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
        Err(source) => return Err(ConfigFileError::Read { path, source }),
    };
    let Some(text) = text else {
        return Ok(Layered {
            args: args_from(argv)?,
            file: None,
            file_keys: BTreeSet::new(),
        });
    };
    let extra = file_flags(&path, &text, &dm)?;
    let mut full: Vec<OsString> = argv.to_vec();
    full.extend(extra.flags.into_iter().map(OsString::from));
    Ok(Layered {
        args: args_from(&full)?,
        file: Some(path),
        file_keys: extra.keys,
    })
}

fn args_from(argv: &[OsString]) -> Result<DaemonArgs, ConfigFileError> {
    let m = Cli::command()
        .try_get_matches_from(argv)
        .map_err(|e| ConfigFileError::Usage(clap_line(&e)))?;
    let cli = Cli::from_arg_matches(&m).map_err(|e| ConfigFileError::Usage(clap_line(&e)))?;
    match cli.command {
        Command::Daemon(a) => Ok(*a),
        _ => Err(ConfigFileError::Usage(
            "not a `netd daemon` command line".into(),
        )),
    }
}

struct FileFlags {
    flags: Vec<String>,
    keys: BTreeSet<String>,
}

/// The file's settings as `--flag=value` arguments, after checking every key and value.
fn file_flags(
    path: &Path,
    text: &str,
    dm: &clap::ArgMatches,
) -> Result<FileFlags, ConfigFileError> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|source| ConfigFileError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    let obj = json
        .as_object()
        .ok_or_else(|| ConfigFileError::NotObject(path.to_path_buf()))?;
    let cmd = Cli::command();
    let daemon = cmd
        .find_subcommand("daemon")
        .expect("the daemon subcommand exists");
    let arg_of = |key: &str| {
        daemon
            .get_arguments()
            .find(|a| a.get_long() == Some(key) && !NOT_IN_FILE.contains(&key))
    };
    let unknown: Vec<String> = obj
        .keys()
        .filter(|k| arg_of(k).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ConfigFileError::Unknown {
            path: path.to_path_buf(),
            keys: unknown,
        });
    }
    let mut conflicts = Vec::new();
    for (k, v) in obj {
        let arg = arg_of(k).expect("checked above");
        if dm.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            let from_flag: Vec<String> = dm
                .get_raw(arg.get_id().as_str())
                .map(|r| r.map(|s| s.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            conflicts.push(format!(
                "{k} (from flag: {}, from file: {v})",
                from_flag.join(" ")
            ));
        }
    }
    if !conflicts.is_empty() {
        return Err(ConfigFileError::Conflict {
            path: path.to_path_buf(),
            details: conflicts,
        });
    }
    let mut flags = Vec::new();
    let mut keys = BTreeSet::new();
    for (k, v) in obj {
        let arg = arg_of(k).expect("checked above");
        let bad = |msg: String| ConfigFileError::BadValue {
            path: path.to_path_buf(),
            key: k.clone(),
            msg,
        };
        let multi = matches!(arg.get_action(), ArgAction::Append);
        let values: Vec<String> = match v {
            serde_json::Value::Array(items) if multi => items
                .iter()
                .map(|i| scalar(i).ok_or_else(|| bad(format!("list item {i} is not a string"))))
                .collect::<Result<_, _>>()?,
            serde_json::Value::Array(_) => {
                return Err(bad(format!("a list was given, but --{k} takes one value")));
            }
            other => vec![scalar(other).ok_or_else(|| {
                bad(format!("expected a string, number or boolean, got {other}"))
            })?],
        };
        let mut these = Vec::new();
        for val in values {
            if matches!(arg.get_action(), ArgAction::SetTrue) {
                match val.as_str() {
                    "true" => these.push(format!("--{k}")),
                    "false" => {}
                    _ => return Err(bad(format!("expected true or false, got {val:?}"))),
                }
            } else {
                these.push(format!("--{k}={val}"));
            }
        }
        // Check these values alone, so that the error names this key.
        let mut probe: Vec<OsString> = vec!["netd".into(), "daemon".into()];
        probe.extend(these.iter().map(OsString::from));
        if let Err(e) = Cli::command().try_get_matches_from(&probe) {
            return Err(bad(clap_line(&e)));
        }
        flags.extend(these);
        keys.insert(k.clone());
    }
    Ok(FileFlags { flags, keys })
}

/// What a reload changes: the long names of settings that differ between `old` and `new`.
pub fn changed(old: &DaemonArgs, new: &DaemonArgs) -> Vec<String> {
    let (Ok(o), Ok(n)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return Vec::new();
    };
    let cmd = Cli::command();
    let daemon = cmd
        .find_subcommand("daemon")
        .expect("the daemon subcommand exists");
    let mut out = Vec::new();
    for a in daemon.get_arguments() {
        let id = a.get_id().as_str();
        if a.get_long().is_some_and(|l| NOT_IN_FILE.contains(&l)) {
            continue;
        }
        if o.get(id) != n.get(id) {
            out.push(a.get_long().unwrap_or(id).to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(extra: &[&str]) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["netd".into(), "daemon".into()];
        v.extend(extra.iter().map(OsString::from));
        v
    }

    fn with_file(json: &str, extra: &[&str]) -> Result<Layered, ConfigFileError> {
        let dir = std::env::temp_dir().join(format!("netd-cfg-{}-{}", std::process::id(), rand()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("daemon.json");
        std::fs::write(&p, json).unwrap();
        let mut a = vec!["--config-file", p.to_str().unwrap()];
        a.extend_from_slice(extra);
        let r = load(&argv(&a));
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    fn rand() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    /// Every daemon flag can be set from the file, and lands where the flag would.
    #[test]
    fn every_key() {
        let l = with_file(
            r#"{
            "uplink": ["eth9", "eth8"], "bridge": "br9", "fixed-cidr": "10.9.0.0/24",
            "mtu": 1400, "icc": false, "ip": "192.0.2.7", "ip-forward": false,
            "ip-masq": false, "default-gateway": "10.9.0.254", "dns": ["192.0.2.53", "192.0.2.54"],
            "dns-search": ["example.test"], "resolv-conf": "/tmp/r.conf", "state-dir": "/tmp/s",
            "bpffs": "/tmp/b", "ct-max": 4096, "ct-per-source-max": 64, "cgroup": "/tmp/cg", "dataplane": "none",
            "fast-path": false, "log-level": "debug", "tc-attach": "netlink",
            "masq-ports": "40000-40999",
            "filter-allow": ["192.0.2.0/24"], "filter-deny": "198.51.100.0/24",
            "group": "adm", "metrics-addr": "127.0.0.1:9423",
            "ipv6": true, "fixed-cidr-v6": "2001:db8:1::/64",
            "default-gateway-v6": "2001:db8:1::fffe"
        }"#,
            &[],
        )
        .unwrap();
        let a = &l.args;
        assert_eq!(a.uplinks, ["eth9", "eth8"]);
        assert_eq!(a.bridge.as_deref(), Some("br9"));
        assert_eq!(a.fixed_cidr.as_deref(), Some("10.9.0.0/24"));
        assert_eq!(a.mtu, Some(1400));
        assert!(!a.icc && !a.ip_forward && !a.ip_masq);
        assert_eq!(a.ip.map(|i| i.to_string()).as_deref(), Some("192.0.2.7"));
        assert_eq!(a.default_gateway.as_deref(), Some("10.9.0.254"));
        assert_eq!(a.dns, ["192.0.2.53", "192.0.2.54"]);
        assert_eq!(a.dns_search, ["example.test"]);
        assert_eq!(a.resolv_conf, Path::new("/tmp/r.conf"));
        assert_eq!(a.state_dir, Path::new("/tmp/s"));
        assert_eq!(a.bpffs, Path::new("/tmp/b"));
        assert_eq!(a.ct_max, 4096);
        assert_eq!(a.ct_per_source_max, 64);
        assert_eq!(a.cgroup.as_deref(), Some(Path::new("/tmp/cg")));
        assert_eq!(a.dataplane, crate::frontend::cli::args::DataplaneArg::None);
        assert_eq!(a.fast_path, Some(false));
        assert_eq!(a.tc_attach, Some(crate::dataplane::TcAttachMode::Netlink));
        assert_eq!(a.masq_ports, "40000-40999");
        assert_eq!(a.log_level, "debug");
        assert_eq!(a.filter_allow, ["192.0.2.0/24"]);
        assert_eq!(a.filter_deny, ["198.51.100.0/24"]);
        assert_eq!(a.group.as_deref(), Some("adm"));
        assert_eq!(a.metrics_addr, Some("127.0.0.1:9423".parse().unwrap()));
        assert!(a.ipv6);
        assert_eq!(a.fixed_cidr_v6.as_deref(), Some("2001:db8:1::/64"));
        assert_eq!(a.default_gateway_v6.as_deref(), Some("2001:db8:1::fffe"));
        // The bip is exclusive with bridge in the daemon (not in the file): check it alone.
        let l2 = with_file(r#"{"bip": "172.31.0.1/16"}"#, &[]).unwrap();
        assert_eq!(l2.args.bip.as_deref(), Some("172.31.0.1/16"));
        // Every long flag but --config-file appears above: a new flag must be added here.
        let cmd = Cli::command();
        let daemon = cmd.find_subcommand("daemon").unwrap();
        for arg in daemon.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if NOT_IN_FILE.contains(&long) {
                continue;
            }
            assert!(
                l.file_keys.contains(long) || l2.file_keys.contains(long),
                "key {long} not covered"
            );
        }
    }

    #[test]
    fn flags_and_file_combine_when_they_do_not_overlap() {
        let l = with_file(r#"{"mtu": 1400}"#, &["--dns", "192.0.2.1"]).unwrap();
        assert_eq!(l.args.mtu, Some(1400));
        assert_eq!(l.args.dns, ["192.0.2.1"]);
    }

    #[test]
    fn conflict_is_refused_naming_both_values() {
        let e = with_file(r#"{"mtu": 1400, "dns": ["192.0.2.2"]}"#, &["--mtu", "1500"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("both as a flag and in the config file"), "{e}");
        assert!(e.contains("mtu (from flag: 1500, from file: 1400)"), "{e}");
        assert!(!e.contains("dns"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = with_file(
            r#"{"mtu": 1400, "bridge-ip": "x", "config-file": "/x"}"#,
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown keys") && e.contains("bridge-ip") && e.contains("config-file"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (json, key, want) in [
            (r#"{"mtu": 70000}"#, "mtu", "70000"),
            (r#"{"mtu": "big"}"#, "mtu", "big"),
            (r#"{"icc": "maybe"}"#, "icc", "maybe"),
            (r#"{"ip": "300.1.1.1"}"#, "ip", "300.1.1.1"),
            (r#"{"dataplane": "xdp"}"#, "dataplane", "xdp"),
            (r#"{"mtu": [1400]}"#, "mtu", "takes one value"),
            (r#"{"dns": [["x"]]}"#, "dns", "not a string"),
            (r#"{"bip": null}"#, "bip", "got null"),
            (r#"{"ct-max": 1}"#, "ct-max", "1"),
            (r#"{"ct-per-source-max": -1}"#, "ct-per-source-max", "-1"),
            (
                r#"{"ct-per-source-max": "many"}"#,
                "ct-per-source-max",
                "many",
            ),
        ] {
            let e = with_file(json, &[]).unwrap_err().to_string();
            assert!(
                e.contains(&format!("invalid value for {key:?}")) && e.contains(want),
                "{json}: {e}"
            );
        }
    }

    #[test]
    fn malformed_files() {
        let e = with_file("{\"mtu\": ", &[]).unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
        let e = with_file("[1]", &[]).unwrap_err().to_string();
        assert!(e.contains("one JSON object"), "{e}");
        let e = load(&argv(&["--config-file", "/nonexistent/netd.json"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read config file /nonexistent/netd.json"),
            "{e}"
        );
    }

    #[test]
    fn changed_names_long_flags() {
        let a = with_file(r#"{"mtu": 1400, "log-level": "info"}"#, &[])
            .unwrap()
            .args;
        let b = with_file(r#"{"mtu": 1300, "log-level": "debug"}"#, &[])
            .unwrap()
            .args;
        assert_eq!(changed(&a, &b), ["mtu", "log-level"]);
    }
}
