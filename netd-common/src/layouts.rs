//! Map value layouts of earlier netd releases, and their conversion to the current ones: what
//! an upgraded agent needs to migrate pinned maps instead of refusing them
//! (`netd/src/dataplane/migrate.rs` holds the per-map table that uses these).
//!
//! A layout change of a map's key or value type bumps that map's version
//! ([`crate::MapLayout::version`], e.g. [`crate::CT_LAYOUT_VERSION`]); the previous type moves
//! here with a `From` conversion, and its [`crate::MapLayout`] goes into
//! [`crate::MAP_LAYOUT_HISTORY`].

use bytemuck::{Pod, Zeroable};

use crate::dp::{CtEntry, CtKey};

/// NETD_CT's value in layout version 1 (netd up to commit 4521f4f).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CtEntryV1 {
    pub nat_saddr: [u32; 4],
    pub nat_daddr: [u32; 4],
    pub nat_sport: u16,
    pub nat_dport: u16,
    pub flags: u16,
    pub tcp_state: u8,
    pub _pad: u8,
    pub td_seq: u32,
    pub _pad2: u32,
    pub binding_id: u32,
    pub ifindex: u32,
    pub last_seen_ns: u64,
    pub created_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    pub peer: CtKey,
}
const _: () = assert!(core::mem::size_of::<CtEntryV1>() == 128);

impl From<CtEntryV1> for CtEntry {
    fn from(o: CtEntryV1) -> Self {
        CtEntry {
            last_seen_ns: o.last_seen_ns,
            packets: o.packets,
            bytes: o.bytes,
            td_seq: o.td_seq,
            flags: o.flags,
            tcp_state: o.tcp_state,
            _pad: 0,
            nat_saddr: o.nat_saddr,
            nat_daddr: o.nat_daddr,
            nat_sport: o.nat_sport,
            nat_dport: o.nat_dport,
            binding_id: o.binding_id,
            ifindex: o.ifindex,
            src_window: 0,
            created_ns: o.created_ns,
            peer: o.peer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_conntrack_value_keeps_every_field() {
        let peer = CtKey::v4(0x0a00_0001, 0x0a00_0002, 80, 40000, 6);
        let old = CtEntryV1 {
            nat_saddr: [1, 2, 3, 4],
            nat_daddr: [5, 6, 7, 8],
            nat_sport: 9,
            nat_dport: 10,
            flags: 11,
            tcp_state: 12,
            td_seq: 13,
            binding_id: 14,
            ifindex: 15,
            last_seen_ns: 16,
            created_ns: 17,
            packets: 18,
            bytes: 19,
            peer,
            ..Default::default()
        };
        let new = CtEntry::from(old);
        assert_eq!(
            (new.nat_saddr, new.nat_daddr, new.nat_sport, new.nat_dport),
            ([1, 2, 3, 4], [5, 6, 7, 8], 9, 10)
        );
        assert_eq!((new.flags, new.tcp_state, new.td_seq), (11, 12, 13));
        assert_eq!((new.binding_id, new.ifindex), (14, 15));
        assert_eq!(
            (new.last_seen_ns, new.created_ns, new.packets, new.bytes),
            (16, 17, 18, 19)
        );
        assert_eq!(new.peer, peer);
        // The bytes really move: a verbatim copy would be a different entry.
        assert_ne!(bytemuck::bytes_of(&old), bytemuck::bytes_of(&new));
    }
}
