//! IPv4 fragments: the first fragment of a datagram carries its ports; later ones do not. The
//! first fragment's ports are recorded (NETD_FRAGS, LRU) so later fragments find their flow and
//! get the same address translation.

use aya_ebpf::{bindings::BPF_ANY, btf_maps::LruHashMap, macros::btf_map};
use netd_common::{FRAGS_MAX, FragKey, FragPorts};

use crate::parse::{FRAG_FIRST, FRAG_LATER, L4_OTHER, Pkt};

#[btf_map]
static NETD_FRAGS: LruHashMap<FragKey, FragPorts, { FRAGS_MAX as usize }> = LruHashMap::new();

#[inline(always)]
fn key(pkt: &Pkt) -> FragKey {
    FragKey {
        saddr: pkt.saddr,
        daddr: pkt.daddr,
        id: pkt.ip_id,
        proto: pkt.proto,
        _pad: 0,
    }
}

/// Records a first fragment's ports, or gives a later fragment the ports its first fragment
/// recorded. False for a later fragment whose first fragment was not seen (lost, reordered or
/// evicted): its flow is unknown.
#[inline(always)]
pub fn resolve(pkt: &mut Pkt) -> bool {
    if pkt.kind == L4_OTHER {
        return true;
    }
    if pkt.frag == FRAG_FIRST {
        let ports = FragPorts {
            sport: pkt.sport,
            dport: pkt.dport,
        };
        // A failed insert only means the later fragments will be unknown.
        let _ = NETD_FRAGS.insert(key(pkt), ports, u64::from(BPF_ANY));
        return true;
    }
    if pkt.frag != FRAG_LATER {
        return true;
    }
    // SAFETY: copied out at once.
    match unsafe { NETD_FRAGS.get(key(pkt)) } {
        Some(p) => {
            pkt.sport = p.sport;
            pkt.dport = p.dport;
            true
        }
        None => false,
    }
}
