//! The IPv6 API is whole or nothing and loads over old pins.

use super::*;

#[test]
fn the_ipv6_api_is_whole_or_nothing_and_loads_over_old_pins() {
    let ns = Netns::new("netd-dpath-api6");
    ns.enter(|| {
        let pins = PinDir::new();
        let mut dp = Dataplane::open(&pins.config()).expect("open");
        // An IPv4 endpoint and flow a running host would have.
        let ep = EndpointInfo {
            ip: ip(A_IP),
            ifindex: 7,
            mac: A_MAC,
            net_id: 0,
        };
        dp.upsert_endpoint(&ep).unwrap();
        let mut ct: HashMap<_, CtKey, CtEntry> =
            HashMap::try_from(open_map(&pins.0, MAP_CT)).unwrap();
        let k = ct_key(A_IP, [192, 0, 2, 9], 1000, 53, IPPROTO_UDP);
        ct.insert(k, CtEntry::default(), 0).unwrap();

        dp.set_endpoint_ipv6(7, a_ll(), Some(a_g())).unwrap();
        dp.set_endpoint_ipv6(8, b_ll(), Some(b_g())).unwrap();
        let addrs = |pins: &PinDir| {
            let m: HashMap<_, [u32; 4], u32> =
                HashMap::try_from(open_map(&pins.0, MAP_EP6_ADDRS)).unwrap();
            let mut v: Vec<_> = m.iter().map(|r| r.unwrap()).collect();
            v.sort();
            v
        };
        assert_eq!(addrs(&pins).len(), 4);
        // Taking B's global address is refused and changes nothing.
        let before = addrs(&pins);
        let err = dp.set_endpoint_ipv6(7, a_ll(), Some(b_g())).unwrap_err();
        assert!(
            matches!(err, DataplaneError::Ipv6InUse { owner: 8, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("2001:db8:1::3"), "{err}");
        assert_eq!(addrs(&pins), before);
        assert_eq!(dp.endpoint_ipv6(7).unwrap().unwrap().global, Some(a_g()));
        let err = dp.set_endpoint_ipv6(7, a_g(), None).unwrap_err();
        assert!(err.to_string().contains("fe80::/10"), "{err}");
        // A new global address replaces the old one.
        dp.set_endpoint_ipv6(7, a_ll(), Some(a6("2001:db8:1::22")))
            .unwrap();
        assert_eq!(addrs(&pins).len(), 4);
        assert!(
            !addrs(&pins)
                .iter()
                .any(|(a, _)| *a == in6_words(a_g().octets()))
        );
        dp.clear_endpoint_ipv6(8).unwrap();
        dp.clear_endpoint_ipv6(8).unwrap();
        assert_eq!(dp.endpoint_ipv6(8).unwrap(), None);
        assert_eq!(addrs(&pins).len(), 2);
        drop(dp);

        // Pins left by a netd without the IPv6 maps: the loader creates them; the IPv4
        // state (endpoints, flows) is kept.
        for m in [MAP_EP6, MAP_EP6_ADDRS, MAP_FRAGS6] {
            std::fs::remove_file(pins.0.join("maps").join(m)).unwrap();
        }
        let mut dp = Dataplane::open(&pins.config()).expect("open over old pins");
        for m in [MAP_EP6, MAP_EP6_ADDRS, MAP_FRAGS6] {
            assert!(pins.0.join("maps").join(m).exists(), "{m} created");
        }
        assert_eq!(dp.endpoint_ipv6(7).unwrap(), None);
        let eps: HashMap<_, u32, EndpointInfo> =
            HashMap::try_from(open_map(&pins.0, MAP_ENDPOINTS)).unwrap();
        assert_eq!(eps.get(&7, 0).unwrap(), ep);
        let ct: HashMap<_, CtKey, CtEntry> = HashMap::try_from(open_map(&pins.0, MAP_CT)).unwrap();
        assert!(ct.get(&k, 0).is_ok(), "the IPv4 flow survived");
        // The full-set call.
        dp.set_endpoints_ipv6(&[
            netd::dataplane::EndpointIpv6 {
                ifindex: 7,
                link_local: a_ll(),
                global: None,
            },
            netd::dataplane::EndpointIpv6 {
                ifindex: 8,
                link_local: a_ll(),
                global: None,
            },
        ])
        .unwrap_err();
        assert!(addrs(&pins).is_empty(), "a refused set changes nothing");
        dp.set_endpoints_ipv6(&[netd::dataplane::EndpointIpv6 {
            ifindex: 7,
            link_local: a_ll(),
            global: Some(a_g()),
        }])
        .unwrap();
        assert_eq!(addrs(&pins).len(), 2);
    });
}
