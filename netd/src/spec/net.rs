//! `--net bridge|host|none|container:NAME`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::*;

/// The `--net` mode of a container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NetMode {
    /// A veth pair into the netd bridge (Docker's default).
    #[default]
    Bridge,
    /// The host's own network namespace.
    Host,
    /// A namespace with only loopback.
    None,
    /// The network namespace of another container, by name or id.
    Container(String),
}

impl fmt::Display for NetMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bridge => f.write_str("bridge"),
            Self::Host => f.write_str("host"),
            Self::None => f.write_str("none"),
            Self::Container(name) => write!(f, "container:{name}"),
        }
    }
}

impl FromStr for NetMode {
    type Err = SpecError;

    /// Parses "bridge", "host", "none" or "container:NAME" (lower case, as Docker does).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| SpecError::NetMode {
            input: s.to_owned(),
            reason,
        };
        match s {
            "bridge" => Ok(Self::Bridge),
            "host" => Ok(Self::Host),
            "none" => Ok(Self::None),
            _ => {
                let Some(name) = s.strip_prefix("container:") else {
                    return Err(fail(
                        "expected bridge, host, none or container:NAME".to_owned(),
                    ));
                };
                check_container_name(name)
                    .map_err(|r| fail(format!("container name {name:?} {r}")))?;
                Ok(Self::Container(name.to_owned()))
            }
        }
    }
}

impl TryFrom<String> for NetMode {
    type Error = SpecError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<NetMode> for String {
    fn from(mode: NetMode) -> Self {
        mode.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;

    // --- NetMode ---

    #[test]
    fn net_mode_parses_each_mode() {
        assert_eq!("bridge".parse::<NetMode>().unwrap(), NetMode::Bridge);
        assert_eq!("host".parse::<NetMode>().unwrap(), NetMode::Host);
        assert_eq!("none".parse::<NetMode>().unwrap(), NetMode::None);
        assert_eq!(
            "container:web_1".parse::<NetMode>().unwrap(),
            NetMode::Container("web_1".to_owned())
        );
        assert_eq!(NetMode::default(), NetMode::Bridge);
    }

    #[test]
    fn net_mode_rejects_unknown_modes_and_bad_names() {
        assert_eq!(
            err("nat".parse::<NetMode>()),
            r#"invalid network mode "nat": expected bridge, host, none or container:NAME"#
        );
        for bad in ["", "Host", "bridged", "container", " host"] {
            assert_err(
                bad.parse::<NetMode>(),
                &[&format!("{bad:?}"), "expected bridge"],
            );
        }
        assert_err(
            "container:".parse::<NetMode>(),
            &[r#"container name "" is empty"#],
        );
        assert_err(
            "container:a:b".parse::<NetMode>(),
            &[r#"container name "a:b" contains ':'"#],
        );
    }

    #[test]
    fn net_mode_display_round_trips_and_serde() {
        for input in ["bridge", "host", "none", "container:db"] {
            let mode: NetMode = input.parse().unwrap();
            assert_eq!(mode.to_string(), input);
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{input}\""));
            assert_eq!(serde_json::from_str::<NetMode>(&json).unwrap(), mode);
        }
        let e = serde_json::from_str::<NetMode>(r#""container:-x""#).unwrap_err();
        assert!(e.to_string().contains("starts with '-'"), "{e}");
    }
}
