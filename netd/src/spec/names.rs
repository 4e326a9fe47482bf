//! Container names, hostnames and `--link NAME[:ALIAS]`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::*;

// ---------------------------------------------------------------------------------------------
// --link and --net

/// One `--link NAME[:ALIAS]`: the linked container and the hostname it gets in this one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "LinkSpecFields")]
pub struct LinkSpec {
    pub name: String,
    pub alias: String,
}

/// What a serialized [`LinkSpec`] holds, before validation.
#[derive(Deserialize)]
struct LinkSpecFields {
    name: String,
    alias: String,
}

impl TryFrom<LinkSpecFields> for LinkSpec {
    type Error = SpecError;

    fn try_from(f: LinkSpecFields) -> Result<Self, Self::Error> {
        Self::new(f.name, f.alias)
    }
}

impl LinkSpec {
    /// A link, checked: `name` a container name, `alias` a container name and a hostname.
    pub fn new(name: String, alias: String) -> Result<Self, SpecError> {
        check_link(&name, &alias).map_err(|reason| SpecError::Link {
            input: format!("{name}:{alias}"),
            reason,
        })?;
        Ok(Self { name, alias })
    }
}

impl fmt::Display for LinkSpec {
    /// The canonical form, `NAME:ALIAS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.alias)
    }
}

impl FromStr for LinkSpec {
    type Err = SpecError;

    /// Parses "NAME" (the alias is the name) or "NAME:ALIAS".
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| SpecError::Link {
            input: s.to_owned(),
            reason,
        };
        let (name, alias) = s.split_once(':').unwrap_or((s, s));
        if alias.contains(':') {
            return Err(fail(
                "it has more than one \":\"; write NAME or NAME:ALIAS".to_owned(),
            ));
        }
        check_link(name, alias).map_err(fail)?;
        Ok(Self {
            name: name.to_owned(),
            alias: alias.to_owned(),
        })
    }
}

fn check_link(name: &str, alias: &str) -> Result<(), String> {
    check_container_name(name).map_err(|r| format!("container name {name:?} {r}"))?;
    check_container_name(alias).map_err(|r| format!("alias {alias:?} {r}"))?;
    check_hostname(alias).map_err(|r| {
        let hint = if alias == name {
            format!("; give the link an alias that is one, as in {name}:ALIAS")
        } else {
            String::new()
        };
        format!("alias {alias:?} is not a valid hostname: it {r}{hint}")
    })
}

// ---------------------------------------------------------------------------------------------
// Names

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Checks the name a container's interface gets (`--ifname`, default eth0): what Linux takes
/// as an interface name, and not `lo`, which every namespace already has.
pub fn validate_ifname(name: &str) -> Result<(), SpecError> {
    let reason = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.len() > MAX_IFNAME_LEN {
        Some(format!(
            "it is {} bytes long; the limit is {MAX_IFNAME_LEN}",
            name.len()
        ))
    } else if name == "." || name == ".." || name == "lo" {
        Some("it is reserved".to_owned())
    } else {
        name.chars()
            .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
            .map(|c| format!("it contains {c:?}"))
    };
    match reason {
        Some(reason) => Err(SpecError::Ifname {
            input: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks a container name against Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, 1 to 64 characters.
pub fn validate_container_name(name: &str) -> Result<(), SpecError> {
    check_container_name(name).map_err(|r| SpecError::ContainerName {
        input: name.to_owned(),
        reason: format!("it {r}"),
    })
}

/// Checks a hostname: RFC 1123 labels (letters, digits and "-", not at either end, 1 to 63
/// characters) joined by dots, at most 64 characters in all as Docker allows.
pub fn validate_hostname(name: &str) -> Result<(), SpecError> {
    check_hostname(name).map_err(|r| SpecError::Hostname {
        input: name.to_owned(),
        reason: format!("it {r}"),
    })
}

// The `check_*` helpers return the problem as a clause ("is empty", "contains '/'") that the
// caller puts after a subject.

pub(super) fn check_container_name(name: &str) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err("is empty".to_owned());
    };
    if !first.is_ascii_alphanumeric() {
        return Err(format!(
            "starts with {first:?}; a name must start with a letter or digit"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "contains {bad:?}; only letters, digits, '_', '.' and '-' are allowed"
        ));
    }
    check_length(name, MAX_CONTAINER_NAME_LEN)
}

fn check_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    check_labels(name)?;
    check_length(name, MAX_HOSTNAME_LEN)
}

/// Checks each dot-separated label of `name`.
pub(super) fn check_labels(name: &str) -> Result<(), String> {
    name.split('.').try_for_each(check_label)
}

fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(
            "has an empty label (a dot at the start or end, or two dots in a row)".to_owned(),
        );
    }
    if let Some(bad) = label
        .chars()
        .find(|&c| !c.is_ascii_alphanumeric() && c != '-')
    {
        return Err(format!(
            "contains {bad:?}; only letters, digits, '-' and '.' are allowed"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!(
            "has a label {label:?} that starts or ends with '-'"
        ));
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "has a label of {} characters; the limit is {MAX_LABEL_LEN}",
            label.len()
        ));
    }
    Ok(())
}

/// Checks the length of an all-ASCII name.
pub(super) fn check_length(name: &str, max: usize) -> Result<(), String> {
    if name.len() > max {
        Err(format!(
            "is {} characters long; the limit is {max}",
            name.len()
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;

    // --- LinkSpec ---

    fn link(name: &str, alias: &str) -> LinkSpec {
        LinkSpec {
            name: name.to_owned(),
            alias: alias.to_owned(),
        }
    }

    #[test]
    fn link_parses_name_and_alias() {
        assert_eq!("db".parse::<LinkSpec>().unwrap(), link("db", "db"));
        assert_eq!("db:mysql".parse::<LinkSpec>().unwrap(), link("db", "mysql"));
        assert_eq!(
            "my_db.1:db-1".parse::<LinkSpec>().unwrap(),
            link("my_db.1", "db-1")
        );
        assert_eq!(
            "0123abcd:cache.local".parse::<LinkSpec>().unwrap(),
            link("0123abcd", "cache.local")
        );
    }

    #[test]
    fn link_rejects_bad_names_and_aliases() {
        assert_err(
            "".parse::<LinkSpec>(),
            &[r#"invalid link "": container name "" is empty"#],
        );
        assert_err(
            "a:b:c".parse::<LinkSpec>(),
            &["more than one \":\"; write NAME or NAME:ALIAS"],
        );
        assert_err(
            "_db:x".parse::<LinkSpec>(),
            &[r#"container name "_db" starts with '_'"#],
        );
        assert_err(":x".parse::<LinkSpec>(), &[r#"container name "" is empty"#]);
        assert_err("db:".parse::<LinkSpec>(), &[r#"alias "" is empty"#]);
        assert_err(
            "db:a/b".parse::<LinkSpec>(),
            &[r#"alias "a/b" contains '/'"#],
        );
        assert_eq!(
            err("db:my_alias".parse::<LinkSpec>()),
            "invalid link \"db:my_alias\": alias \"my_alias\" is not a valid hostname: it \
             contains '_'; only letters, digits, '-' and '.' are allowed"
        );
        assert_err(
            "my_db".parse::<LinkSpec>(),
            &[
                r#"alias "my_db" is not a valid hostname"#,
                "as in my_db:ALIAS",
            ],
        );
        assert_err("db:web-".parse::<LinkSpec>(), &["starts or ends with '-'"]);
        let long = "a".repeat(65);
        assert_err(
            format!("{long}:db").parse::<LinkSpec>(),
            &["is 65 characters long; the limit is 64"],
        );
    }

    #[test]
    fn link_display_round_trips_and_serde() {
        let l: LinkSpec = "db".parse().unwrap();
        assert_eq!(l.to_string(), "db:db");
        let l: LinkSpec = "web.1:web".parse().unwrap();
        assert_eq!(l.to_string(), "web.1:web");
        assert_eq!(l.to_string().parse::<LinkSpec>().unwrap(), l);

        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, r#"{"name":"web.1","alias":"web"}"#);
        assert_eq!(serde_json::from_str::<LinkSpec>(&json).unwrap(), l);
        let e = serde_json::from_str::<LinkSpec>(r#"{"name":"db","alias":"a_b"}"#).unwrap_err();
        assert!(e.to_string().contains("not a valid hostname"), "{e}");
        assert!(LinkSpec::new("db".into(), "cache".into()).is_ok());
        assert_err(
            LinkSpec::new("/db".into(), "cache".into()),
            &[r#"invalid link "/db:cache""#],
        );
    }

    // --- Container names, hostnames, DNS search domains ---

    #[test]
    fn interface_names() {
        for good in ["eth0", "net1", "a", "x-y.z", &"e".repeat(15)] {
            assert!(validate_ifname(good).is_ok(), "{good}");
        }
        assert_err(validate_ifname(""), &["is empty"]);
        assert_err(
            validate_ifname(&"e".repeat(16)),
            &["16 bytes", "limit is 15"],
        );
        assert_err(validate_ifname("lo"), &["reserved"]);
        assert_err(validate_ifname("a/b"), &["'/'"]);
        assert_err(validate_ifname("a b"), &["' '"]);
    }

    #[test]
    fn container_names() {
        for good in ["a", "7", "web", "Web_1.2-x", "0123abcd", &"a".repeat(64)] {
            assert!(validate_container_name(good).is_ok(), "{good}");
        }
        assert_eq!(
            err(validate_container_name("web/1")),
            "invalid container name \"web/1\": it contains '/'; only letters, digits, '_', '.' \
             and '-' are allowed"
        );
        assert_err(validate_container_name(""), &[r#"name "": it is empty"#]);
        for bad in ["_web", ".web", "-web", "/web"] {
            assert_err(
                validate_container_name(bad),
                &["must start with a letter or digit"],
            );
        }
        assert_err(validate_container_name("we b"), &["contains ' '"]);
        assert_err(validate_container_name("wéb"), &["contains 'é'"]);
        assert_err(
            validate_container_name(&"a".repeat(65)),
            &["is 65 characters long; the limit is 64"],
        );
    }

    #[test]
    fn hostnames() {
        let max = format!("{}.{}", "a".repeat(31), "b".repeat(32));
        assert_eq!(max.len(), 64);
        for good in [
            "a",
            "web",
            "web-1",
            "Web-1",
            "my.host.example",
            "123",
            "a-b-c",
            &max,
        ] {
            assert!(validate_hostname(good).is_ok(), "{good}");
        }
        assert_eq!(
            err(validate_hostname("a_b")),
            "invalid hostname \"a_b\": it contains '_'; only letters, digits, '-' and '.' are \
             allowed"
        );
        assert_err(validate_hostname(""), &["it is empty"]);
        assert_err(
            validate_hostname(&format!("{max}b")),
            &["is 65 characters long; the limit is 64"],
        );
        for bad in ["-web", "web-", "a.-b", "a.b-"] {
            assert_err(validate_hostname(bad), &["starts or ends with '-'"]);
        }
        for bad in ["a..b", ".a", "a."] {
            assert_err(validate_hostname(bad), &["empty label"]);
        }
        assert_err(
            validate_hostname(&"a".repeat(64)),
            &["has a label of 64 characters; the limit is 63"],
        );
        assert_err(validate_hostname("a b"), &["contains ' '"]);
    }
}
