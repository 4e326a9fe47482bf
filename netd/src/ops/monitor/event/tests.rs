use super::*;

fn tcp_frame() -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[14 + 9] = 6;
    f[14 + 12..14 + 16].copy_from_slice(&[172, 17, 0, 2]);
    f[14 + 16..14 + 20].copy_from_slice(&[172, 17, 0, 3]);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f
}

#[test]
fn tuple_of_ipv4_tcp() {
    let t = tuple(&tcp_frame());
    assert_eq!(t.proto, "tcp");
    assert_eq!(t.src, Some("172.17.0.2".parse().unwrap()));
    assert_eq!(t.dst, Some("172.17.0.3".parse().unwrap()));
    assert_eq!((t.sport, t.dport), (Some(40000), Some(80)));
}

#[test]
fn tuple_honours_ihl_and_vlan() {
    let mut f = tcp_frame();
    // Options: IHL 6, four more bytes before the TCP header.
    f[14] = 0x46;
    f.splice(34..34, [1, 1, 1, 1]);
    // One VLAN tag.
    f.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    let t = tuple(&f);
    assert_eq!((t.sport, t.dport), (Some(40000), Some(80)));
    assert_eq!(t.dst, Some("172.17.0.3".parse().unwrap()));
}

#[test]
fn tuple_of_truncated_and_foreign() {
    assert_eq!(tuple(&[0; 10]).proto, "truncated");
    let mut f = vec![0u8; 20];
    f[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    assert_eq!(tuple(&f).proto, "ethertype/0x88cc");
    let f = tcp_frame();
    let t = tuple(&f[..30]);
    assert_eq!((t.proto.as_str(), t.src), ("ipv4", None));
}

#[test]
fn reasons_by_name_or_number() {
    assert_eq!(parse_reason("icc-denied"), Ok(netd_common::DROP_ICC));
    assert_eq!(parse_reason("2"), Ok(netd_common::DROP_SPOOFED_IP));
    let e = parse_reason("bogus").unwrap_err();
    assert!(e.contains("spoofed-source-ip"), "{e}");
    assert!(parse_reason("0").is_err());
}

#[test]
fn filter_round_trips_and_matches() {
    let f = Filter::from_query(None, Some("icc-denied,2"), Some("web"), Some("80")).unwrap();
    assert_eq!(
        Filter::from_query(None, Some("4,2"), Some("web"), Some("80")).unwrap(),
        f
    );
    let q = f.to_query();
    assert_eq!(q, "?reason=4,2&container=web&port=80");
    let mut d = Drop {
        time_ns: 0,
        reason: "icc-denied".into(),
        reason_code: netd_common::DROP_ICC,
        program: "from_container".into(),
        ifindex: 7,
        ifname: None,
        container: Some("db".into()),
        peer: Some("web".into()),
        tuple: tuple(&tcp_frame()),
        len: 54,
        head: String::new(),
    };
    assert!(f.matches(&d));
    d.peer = None;
    assert!(!f.matches(&d));
    assert!(Filter::default().matches(&d));
    d.reason_code = netd_common::DROP_MARTIAN;
    assert!(
        !Filter::from_query(None, Some("4"), None, None)
            .unwrap()
            .matches(&d)
    );
    assert!(Filter::from_query(None, None, None, Some("99")).is_ok_and(|f| !f.matches(&d)));
    assert!(Filter::from_query(None, None, None, Some("x")).is_err());
}

#[test]
fn hex_round_trip() {
    assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
    assert_eq!(unhex("0"), None);
}

#[test]
fn human_line() {
    let d = Drop {
        time_ns: 3_723_000_001_000,
        reason: "icc-denied".into(),
        reason_code: 4,
        program: "from_container".into(),
        ifindex: 7,
        ifname: Some("veth1".into()),
        container: Some("web".into()),
        peer: Some("db".into()),
        tuple: tuple(&tcp_frame()),
        len: 54,
        head: String::new(),
    };
    assert_eq!(
        format_line(&Line::Drop(Box::new(d))),
        "01:02:03.000001 drop icc-denied from_container veth1 (web -> db) tcp 172.17.0.2:40000 -> 172.17.0.3:80 len 54"
    );
}
