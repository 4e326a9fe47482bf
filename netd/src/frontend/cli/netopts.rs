//! `netd network create`'s flags for the driver options Docker takes only as `-o KEY=VALUE`
//! (`--icc`, `--ip-masq`, `--mtu`, `--bridge`): each becomes its `-o` key in the request, and a
//! flag and an `-o` of the same key that disagree are refused, naming both.

use std::collections::BTreeMap;

use clap::ArgAction;

pub const ICC: &str = "com.docker.network.bridge.enable_icc";
pub const IP_MASQ: &str = "com.docker.network.bridge.enable_ip_masquerade";
pub const MTU: &str = "com.docker.network.driver.mtu";
pub const BRIDGE_NAME: &str = "com.docker.network.bridge.name";

#[derive(Debug, Clone, Default, clap::Args)]
pub struct NetworkFlags {
    /// Inter-container communication on this network (-o com.docker.network.bridge.enable_icc).
    #[arg(long, value_name = "BOOL", action = ArgAction::Set)]
    pub icc: Option<bool>,
    /// Masquerade this network's traffic to the outside
    /// (-o com.docker.network.bridge.enable_ip_masquerade).
    #[arg(long = "ip-masq", value_name = "BOOL", action = ArgAction::Set)]
    pub ip_masq: Option<bool>,
    /// MTU of the network's bridge and container interfaces (-o com.docker.network.driver.mtu).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(68..=65535))]
    pub mtu: Option<u32>,
    /// Name of the network's bridge (-o com.docker.network.bridge.name).
    #[arg(long, value_name = "NAME")]
    pub bridge: Option<String>,
}

/// How an option's values compare: `-o ...enable_icc=false` is `--icc false`.
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Number,
    Name,
}

impl Kind {
    fn same(self, a: &str, b: &str) -> bool {
        match self {
            Kind::Bool => a.parse::<bool>().ok() == b.parse::<bool>().ok(),
            Kind::Number => a.trim().parse::<u32>().ok() == b.trim().parse::<u32>().ok(),
            Kind::Name => a == b,
        }
    }
}

/// The request's driver options: the `-o KEY=VALUE` list with the flags added as their keys.
pub fn driver_options(
    opts: &[String],
    flags: &NetworkFlags,
) -> Result<BTreeMap<String, String>, String> {
    let mut options = BTreeMap::new();
    for o in opts {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| format!("invalid -o {o:?}: expected KEY=VALUE"))?;
        if let Some(prev) = options.insert(k.to_string(), v.to_string()) {
            if prev != v {
                return Err(format!(
                    "-o {k}={prev} and -o {k}={v} disagree: give {k} once"
                ));
            }
        }
    }
    let wanted = [
        ("--icc", ICC, flags.icc.map(|b| b.to_string()), Kind::Bool),
        (
            "--ip-masq",
            IP_MASQ,
            flags.ip_masq.map(|b| b.to_string()),
            Kind::Bool,
        ),
        ("--mtu", MTU, flags.mtu.map(|m| m.to_string()), Kind::Number),
        ("--bridge", BRIDGE_NAME, flags.bridge.clone(), Kind::Name),
    ];
    for (flag, key, value, kind) in wanted {
        let Some(value) = value else { continue };
        match options.get(key) {
            // The same setting twice (`--icc false -o ...enable_icc=false`) is fine.
            Some(o) if kind.same(o, &value) => {}
            Some(o) => {
                return Err(format!(
                    "{flag} {value} conflicts with -o {key}={o}: give one of them"
                ));
            }
            None => {
                options.insert(key.to_string(), value);
            }
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_become_their_option_keys() {
        let f = NetworkFlags {
            icc: Some(false),
            ip_masq: Some(true),
            mtu: Some(1400),
            bridge: Some("br-q".into()),
        };
        let m = driver_options(&[], &f).unwrap();
        assert_eq!(m[ICC], "false");
        assert_eq!(m[IP_MASQ], "true");
        assert_eq!(m[MTU], "1400");
        assert_eq!(m[BRIDGE_NAME], "br-q");
        // No flags: only the -o list.
        let m = driver_options(&o(&["a=b"]), &NetworkFlags::default()).unwrap();
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            [("a".into(), "b".into())]
        );
    }

    #[test]
    fn a_flag_and_an_option_must_agree() {
        let icc = NetworkFlags {
            icc: Some(false),
            ..Default::default()
        };
        let m = driver_options(&o(&[&format!("{ICC}=false")]), &icc).unwrap();
        assert_eq!(m[ICC], "false");
        assert_eq!(
            driver_options(&o(&[&format!("{ICC}=true")]), &icc).unwrap_err(),
            format!("--icc false conflicts with -o {ICC}=true: give one of them")
        );
        let mtu = NetworkFlags {
            mtu: Some(1400),
            ..Default::default()
        };
        assert!(driver_options(&o(&[&format!("{MTU}=1400")]), &mtu).is_ok());
        let e = driver_options(&o(&[&format!("{MTU}=1500")]), &mtu).unwrap_err();
        assert!(e.starts_with("--mtu 1400 conflicts with -o"), "{e}");
        let e = driver_options(&o(&["x=1", "x=2"]), &NetworkFlags::default()).unwrap_err();
        assert_eq!(e, "-o x=1 and -o x=2 disagree: give x once");
        let e = driver_options(&o(&["novalue"]), &NetworkFlags::default()).unwrap_err();
        assert!(e.contains("expected KEY=VALUE"), "{e}");
    }
}
