//! Source filters: the allow and deny lists, and the martian sources no host may send from.

/// `LpmTrie<u32 ipv4 (nbo), u32>`: source allow list (empty = everyone).
pub const MAP_FILTER_ALLOW: &str = "NETD_FILTER_ALLOW";
/// `LpmTrie<u32 ipv4 (nbo), u32>`: source deny list.
pub const MAP_FILTER_DENY: &str = "NETD_FILTER_DENY";
pub const FILTER_MAX: u32 = 16384;

/// Is `ip` (network byte order) a source no host may send from: 0.0.0.0/8 ("this network"),
/// 127.0.0.0/8 (loopback), 224.0.0.0/4 (multicast), 240.0.0.0/4 (reserved, and the limited
/// broadcast)? The stack calls these martians; the bridge subnet and the host's own addresses
/// are checked besides, against the configuration.
#[inline(always)]
pub fn is_martian_source(ip: u32) -> bool {
    let first = u32::from_be(ip) >> 24;
    first == 0 || first == 127 || first >= 224
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn martian_sources() {
        let m = |a: [u8; 4]| is_martian_source(u32::from_ne_bytes(a));
        for a in [
            [0, 0, 0, 0],
            [0, 1, 2, 3],
            [127, 0, 0, 1],
            [127, 255, 0, 9],
            [224, 0, 0, 1],
            [239, 255, 255, 250],
            [240, 0, 0, 1],
            [255, 255, 255, 255],
        ] {
            assert!(m(a), "{a:?} is a martian source");
        }
        for a in [
            [1, 0, 0, 1],
            [126, 1, 1, 1],
            [128, 0, 0, 1],
            [203, 0, 113, 7],
            [223, 255, 255, 255],
        ] {
            assert!(!m(a), "{a:?} is a valid source");
        }
    }
}
