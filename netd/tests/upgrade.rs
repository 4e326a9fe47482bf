//! Versioned map layouts (issue 13, root): pins of an older layout are migrated (converted,
//! then the delta copied and the old pin removed), pins of a newer one are refused. The
//! end-to-end upgrade under traffic, from the netd of commit 4521f4f, is
//! tests/tests/upgrade.rs.

use std::fs;

use aya::maps::{HashMap, Map, MapData};
use netd::dataplane::{Dataplane, pinned_map};
use netd_common::{CT_LAYOUT_VERSION, CtEntry, CtKey, MAP_CT, layouts::CtEntryV1};

#[path = "datapath_util/mod.rs"]
mod datapath_util;

use datapath_util::{PinDir, ct_key, open_refused, pin_bpftool_map, run_cmd as run};

fn old_entry(k: CtKey, last_seen_ns: u64) -> CtEntryV1 {
    CtEntryV1 {
        nat_saddr: [u32::from_ne_bytes([203, 0, 113, 7]), 0, 0, 0],
        nat_daddr: [u32::from_ne_bytes([172, 17, 0, 2]), 0, 0, 0],
        nat_sport: 40000u16.to_be(),
        nat_dport: 80u16.to_be(),
        flags: 3,
        tcp_state: 4,
        td_seq: 12345,
        binding_id: 7,
        ifindex: 9,
        last_seen_ns,
        created_ns: 1,
        packets: 10,
        bytes: 1000,
        peer: k.reversed(),
        ..Default::default()
    }
}

fn map_at(path: &std::path::Path) -> Map {
    Map::from_map_data(MapData::from_pin(path).expect("pin")).expect("map")
}

/// A pin directory that one dataplane opened and closed: the current layout's pins are there.
fn opened_pins() -> PinDir {
    let pins = PinDir::new();
    drop(Dataplane::open(&pins.config()).expect("open"));
    pins
}

/// Replaces the current NETD_CT pin with an empty hash of `entries` entries under the
/// version-1 name (what netd up to 4521f4f pinned), its values `value_size` bytes (128 in
/// version 1).
fn pin_v1_ct_sized(pins: &PinDir, value_size: u32, entries: u32) -> std::path::PathBuf {
    fs::remove_file(pinned_map(&pins.0, MAP_CT)).expect("unpin NETD_CT");
    let v1 = pins.0.join("maps").join(MAP_CT);
    pin_bpftool_map(&v1, "hash", 40, value_size, entries, MAP_CT);
    v1
}

/// An empty version-1 NETD_CT of `entries` entries in place of the current one, as a netd of
/// that layout would have left it.
fn pin_v1_ct(pins: &PinDir, entries: u32) -> std::path::PathBuf {
    pin_v1_ct_sized(pins, 128, entries)
}

/// The names pinned under the pin directory's maps/.
fn map_pins(pins: &PinDir) -> Vec<std::ffi::OsString> {
    fs::read_dir(pins.0.join("maps"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

#[test]
fn an_older_conntrack_layout_is_migrated_with_its_delta() {
    assert_eq!(CT_LAYOUT_VERSION, 2, "this test migrates version 1 to 2");
    let pins = opened_pins();
    let new_pin = pinned_map(&pins.0, MAP_CT);
    assert!(
        new_pin.ends_with("NETD_CT@v2"),
        "version 2 pin name: {}",
        new_pin.display()
    );
    let v1 = pin_v1_ct(&pins, 4096);
    let a = ct_key([203, 0, 113, 7], [198, 51, 100, 1], 40000, 8080, 6);
    let b = ct_key([203, 0, 113, 8], [198, 51, 100, 1], 40001, 8080, 6);
    let c = ct_key([203, 0, 113, 9], [198, 51, 100, 1], 40002, 8080, 17);
    {
        let mut old: HashMap<_, CtKey, CtEntryV1> = HashMap::try_from(map_at(&v1)).unwrap();
        old.insert(a, old_entry(a, 100), 0).unwrap();
        old.insert(b, old_entry(b, 100), 0).unwrap();
    }

    let mut dp = Dataplane::open(&pins.config()).expect("open over version-1 pins");
    assert_eq!(dp.migrating(), vec![(MAP_CT, 1)]);
    assert!(
        v1.exists(),
        "the old map stays until the programs are swapped"
    );
    let info = aya::maps::MapInfo::from_pin(&new_pin).unwrap();
    assert_eq!(
        info.max_entries(),
        4096,
        "the new map keeps the old one's size"
    );
    {
        let new: HashMap<_, CtKey, CtEntry> = HashMap::try_from(map_at(&new_pin)).unwrap();
        let e = new.get(&a, 0).expect("flow a copied");
        assert_eq!(
            e,
            CtEntry::from(old_entry(a, 100)),
            "converted field by field"
        );
        assert_eq!(e.nat_daddr[0], u32::from_ne_bytes([172, 17, 0, 2]));
        assert_eq!(
            (e.nat_dport, e.td_seq, e.peer),
            (80u16.to_be(), 12345, a.reversed())
        );
    }

    // Between the copy and the swap: the old programs create flow c and see b again, while
    // the new ones already saw a later packet of a.
    {
        let mut old: HashMap<_, CtKey, CtEntryV1> = HashMap::try_from(map_at(&v1)).unwrap();
        old.insert(c, old_entry(c, 300), 0).unwrap();
        old.insert(b, old_entry(b, 200), 0).unwrap();
        let mut new: HashMap<_, CtKey, CtEntry> = HashMap::try_from(map_at(&new_pin)).unwrap();
        let mut e = new.get(&a, 0).unwrap();
        e.last_seen_ns = 500;
        new.insert(a, e, 0).unwrap();
    }
    dp.finish_migration().expect("finish");
    assert!(dp.migrating().is_empty());
    // The old map is gone; its version-1 path holds a tombstone that a netd from before
    // versioning refuses (an array of one u32: the version the map moved to).
    let stone = aya::maps::MapInfo::from_pin(&v1).expect("a tombstone at the old path");
    assert_eq!(
        (stone.key_size(), stone.value_size(), stone.name_as_str()),
        (4, 4, Some("NETD_MOVED"))
    );
    let new: HashMap<_, CtKey, CtEntry> = HashMap::try_from(map_at(&new_pin)).unwrap();
    assert_eq!(
        new.get(&c, 0).unwrap(),
        CtEntry::from(old_entry(c, 300)),
        "delta: new flow"
    );
    assert_eq!(
        new.get(&b, 0).unwrap().last_seen_ns,
        200,
        "delta: the later copy wins"
    );
    assert_eq!(
        new.get(&a, 0).unwrap().last_seen_ns,
        500,
        "the new programs' update kept"
    );
    drop(dp);

    // A second start finds only the current pins: nothing to migrate, the flows kept.
    let dp = Dataplane::open(&pins.config()).expect("reopen");
    assert!(dp.migrating().is_empty());
    let new: HashMap<_, CtKey, CtEntry> = HashMap::try_from(map_at(&new_pin)).unwrap();
    assert_eq!(new.keys().count(), 3);
    drop(dp);

    // A tombstone pointing past this netd's version is a downgrade.
    fs::remove_file(&v1).unwrap();
    pin_bpftool_map(&v1, "array", 4, 4, 1, "NETD_MOVED");
    run(&[
        "bpftool",
        "map",
        "update",
        "pinned",
        v1.to_str().unwrap(),
        "key",
        "0",
        "0",
        "0",
        "0",
        "value",
        "9",
        "0",
        "0",
        "0",
    ]);
    let err = open_refused(&pins, "a tombstone of version 9");
    assert!(
        err.contains("version 9") && err.contains("NETD_CT"),
        "{err}"
    );
}

/// Pins of a newer layout (a downgrade) are refused, naming the map and both versions, and
/// nothing is created or removed.
#[test]
fn a_newer_layout_is_refused() {
    let pins = opened_pins();
    let v3 = pins.0.join("maps").join("NETD_CT@v3");
    let v2 = pinned_map(&pins.0, MAP_CT);
    fs::rename(&v2, &v3).expect("rename the pin");
    let before = map_pins(&pins);
    let err = open_refused(&pins, "a version-3 NETD_CT");
    assert!(
        err.contains("NETD_CT") && err.contains("version 3") && err.contains("version 2"),
        "{err}"
    );
    assert!(err.contains("downgrad"), "{err}");
    let after = map_pins(&pins);
    assert_eq!(
        before.len(),
        after.len(),
        "the refused start changed the pins"
    );
    assert!(!v2.exists(), "no version-2 map was created");
}

/// A version-1 pin whose sizes are not version 1's is refused, not converted.
#[test]
fn an_old_pin_with_the_wrong_sizes_is_refused() {
    let pins = opened_pins();
    pin_v1_ct_sized(&pins, 120, 16);
    let err = open_refused(&pins, "a version-1 pin with another value size");
    assert!(
        err.contains("NETD_CT") && err.contains("incompatible") && err.contains("layout version 1"),
        "{err}"
    );
}
