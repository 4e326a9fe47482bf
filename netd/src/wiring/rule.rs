//! Policy-routing rules that keep networks apart: `from SUBNET_A to SUBNET_B prohibit`, at one
//! priority that only netd uses, so the daemon can list and reconcile exactly its own rules.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::IpVersion;

use super::{Netlink, WiringError, nl};

/// A rule that refuses routing from one subnet to another (for packets arriving on `iif`
/// only, when it is set).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Prohibit {
    pub from: Ipv4Net,
    pub to: Ipv4Net,
    pub iif: Option<String>,
}

fn prohibit_of(m: &RuleMessage, priority: u32) -> Option<Prohibit> {
    if m.header.action != RuleAction::Prohibit {
        return None;
    }
    let (mut prio, mut src, mut dst, mut iif) = (None, None, None, None);
    for a in &m.attributes {
        match a {
            RuleAttribute::Iifname(i) => iif = Some(i.clone()),
            RuleAttribute::Priority(p) => prio = Some(*p),
            RuleAttribute::Source(IpAddr::V4(s)) => src = Some(*s),
            RuleAttribute::Destination(IpAddr::V4(d)) => dst = Some(*d),
            _ => {}
        }
    }
    if prio != Some(priority) {
        return None;
    }
    Some(Prohibit {
        from: Ipv4Net::new(src.unwrap_or(Ipv4Addr::UNSPECIFIED), m.header.src_len).ok()?,
        to: Ipv4Net::new(dst.unwrap_or(Ipv4Addr::UNSPECIFIED), m.header.dst_len).ok()?,
        iif,
    })
}

impl Netlink {
    /// Makes the prohibit rules at `priority` exactly `want`: missing ones are added first,
    /// then the ones no longer wanted are removed.
    pub async fn sync_prohibit_rules(
        &self,
        priority: u32,
        want: &[Prohibit],
    ) -> Result<(), WiringError> {
        let msgs: Vec<RuleMessage> = self
            .handle
            .rule()
            .get(IpVersion::V4)
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing routing rules"))?;
        let have: Vec<(Prohibit, RuleMessage)> = msgs
            .into_iter()
            .filter_map(|m| prohibit_of(&m, priority).map(|p| (p, m)))
            .collect();
        for w in want {
            if have.iter().any(|(p, _)| p == w) {
                continue;
            }
            let mut req = self
                .handle
                .rule()
                .add()
                .v4()
                .priority(priority)
                .action(RuleAction::Prohibit)
                .destination_prefix(w.to.network(), w.to.prefix_len());
            if w.from.prefix_len() > 0 {
                req = req.source_prefix(w.from.network(), w.from.prefix_len());
            }
            if let Some(i) = &w.iif {
                req = req.input_interface(i.clone());
            }
            req.execute().await.map_err(nl(format!(
                "adding the routing rule from {} to {} prohibit",
                w.from, w.to
            )))?;
        }
        for (p, m) in have {
            if want.contains(&p) {
                continue;
            }
            self.handle
                .rule()
                .del(m)
                .execute()
                .await
                .map_err(nl(format!(
                    "removing the routing rule from {} to {} prohibit",
                    p.from, p.to
                )))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::rule::RuleHeader;

    use super::*;

    fn msg(action: RuleAction, prio: u32, src: Option<(&str, u8)>, dst: (&str, u8)) -> RuleMessage {
        let mut m = RuleMessage::default();
        m.header = RuleHeader {
            action,
            dst_len: dst.1,
            src_len: src.map(|s| s.1).unwrap_or(0),
            ..Default::default()
        };
        m.attributes.push(RuleAttribute::Priority(prio));
        if let Some((a, _)) = src {
            m.attributes
                .push(RuleAttribute::Source(IpAddr::V4(a.parse().unwrap())));
        }
        m.attributes.push(RuleAttribute::Destination(IpAddr::V4(
            dst.0.parse().unwrap(),
        )));
        m
    }

    #[test]
    fn only_prohibit_rules_at_our_priority_are_ours() {
        let ours = msg(
            RuleAction::Prohibit,
            30000,
            Some(("10.77.0.0", 24)),
            ("172.30.0.0", 24),
        );
        assert_eq!(
            prohibit_of(&ours, 30000),
            Some(Prohibit {
                from: "10.77.0.0/24".parse().unwrap(),
                to: "172.30.0.0/24".parse().unwrap(),
                iif: None,
            })
        );
        // "from all": a zero-length source.
        let all = msg(RuleAction::Prohibit, 30000, None, ("10.79.0.0", 24));
        assert_eq!(prohibit_of(&all, 30000).unwrap().from.prefix_len(), 0);
        let other_prio = msg(RuleAction::Prohibit, 100, None, ("10.79.0.0", 24));
        assert_eq!(prohibit_of(&other_prio, 30000), None);
        let lookup = msg(RuleAction::ToTable, 30000, None, ("10.79.0.0", 24));
        assert_eq!(prohibit_of(&lookup, 30000), None);
    }
}
