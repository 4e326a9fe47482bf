//! The journal's crash cases, on files: each test builds the on-disk state a crash at some
//! point leaves and checks what loads.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::journal::FRAME;
use super::*;
use crate::engine::state::{Endpoint, PortBinding, Written};
use crate::fsutil::test_util::TempDir;
use crate::spec::{NetMode, Proto};

fn endpoint(name: &str, i: u32) -> Endpoint {
    Endpoint {
        name: name.into(),
        netns: PathBuf::from(format!("/run/netns/{name}")),
        net: NetMode::Bridge,
        network: None,
        ifname: "eth0".into(),
        hostname: name.into(),
        ip: Some(Ipv4Addr::from(0x0a00_0002 + i)),
        mac: Some([2, 0x42, 10, 0, 0, 2]),
        gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
        host_ifname: Some(format!("veth{i:07x}")),
        host_ifindex: Some(100 + i),
        etc_dir: PathBuf::from(format!("/var/lib/netd/containers/{name}")),
        publish: Vec::new(),
        publish_all: false,
        ports: Vec::new(),
        exposed: Vec::new(),
        links: Vec::new(),
        dns: Vec::new(),
        dns_search: Vec::new(),
        p2p: Vec::new(),
        written: Written::default(),
        reserve_ports: true,
        handed_over: false,
        ipv6: None,
        ndp_proxy: Vec::new(),
    }
}

fn binding(id: u32, port: u16) -> PortBinding {
    PortBinding {
        id,
        proto: Proto::Tcp,
        host_ip: "0.0.0.0".parse().unwrap(),
        host_port: port,
        container_port: 80,
        count: 1,
        also_v6: false,
        relay46: false,
    }
}

/// The parts of a state a test compares (State has no PartialEq: endpoints compare as JSON).
fn canon(s: &State) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap();
    v.as_object_mut().unwrap().remove("journal_gen");
    v
}

fn open(dir: &TempDir) -> (Store, State) {
    Store::open(&dir.0).unwrap()
}

/// A store with a snapshot and some journal records on top: c1 (with two published ports), c2
/// removed again, c3, a held address, a changed binding id.
fn populated(dir: &TempDir) -> State {
    let (mut store, mut st) = open(dir);
    store.snapshot(&mut st).unwrap();
    for (i, n) in ["c1", "c2", "c3"].iter().enumerate() {
        st.endpoints.insert(n.to_string(), endpoint(n, i as u32));
        store.commit(&mut st, &[Touched::Endpoint(n)]).unwrap();
    }
    st.endpoints.remove("c2");
    store.commit(&mut st, &[Touched::Endpoint("c2")]).unwrap();
    let e = st.endpoints.get_mut("c1").unwrap();
    e.ports.push(binding(1, 8080));
    e.ports.push(binding(2, 8081));
    e.publish.push("8080:80".parse().unwrap());
    st.next_binding_id = 3;
    store
        .commit(
            &mut st,
            &[Touched::PortsAdded {
                endpoint: "c1",
                ports: 2,
                publish: 1,
            }],
        )
        .unwrap();
    st.held.insert(Ipv4Addr::new(10, 0, 0, 9), "ep-9".into());
    store.commit(&mut st, &[]).unwrap();
    st
}

fn journal(dir: &TempDir) -> PathBuf {
    dir.0.join("state.journal")
}

#[test]
fn changes_survive_a_reopen() {
    let dir = TempDir::new("store-reopen");
    let want = populated(&dir);
    let (_s, got) = open(&dir);
    assert_eq!(canon(&got), canon(&want));
    assert_eq!(got.endpoints["c1"].ports.len(), 2);
    assert!(!got.endpoints.contains_key("c2"));
    assert_eq!(got.next_binding_id, 3);
}

#[test]
fn a_state_json_of_the_previous_release_loads_and_is_taken_over() {
    let dir = TempDir::new("store-migrate");
    // What the previous release wrote: one document, no journal generation, no journal.
    let mut old = State::default();
    old.endpoints.insert("web".into(), endpoint("web", 5));
    old.endpoints
        .get_mut("web")
        .unwrap()
        .ports
        .push(binding(1, 80));
    old.next_binding_id = 2;
    let mut v = serde_json::to_value(&old).unwrap();
    v.as_object_mut().unwrap().remove("journal_gen");
    std::fs::write(dir.0.join("state.json"), v.to_string()).unwrap();
    let (mut store, mut st) = open(&dir);
    assert_eq!(canon(&st), canon(&old));
    // The first commit writes a snapshot with a journal, and later changes go to the journal.
    store.commit(&mut st, &[]).unwrap();
    assert!(journal(&dir).exists());
    st.endpoints.insert("db".into(), endpoint("db", 6));
    store.commit(&mut st, &[Touched::Endpoint("db")]).unwrap();
    drop(store);
    let (_s, got) = open(&dir);
    assert_eq!(canon(&got), canon(&st));
}

#[test]
fn a_torn_last_record_is_dropped_and_the_journal_continues() {
    let dir = TempDir::new("store-torn");
    let want = populated(&dir);
    let len = std::fs::metadata(journal(&dir)).unwrap().len();
    // kill -9 (or a power loss) in the middle of the next append: c4's record cut short.
    let mut rec = Vec::new();
    frame(&mut rec, &RecordOut::PutEndpoint(&endpoint("c4", 4)));
    for cut in [3, FRAME + 10, rec.len() - 1] {
        let mut data = std::fs::read(journal(&dir)).unwrap();
        data.truncate(len as usize);
        data.extend_from_slice(&rec[..cut]);
        std::fs::write(journal(&dir), &data).unwrap();
        let (mut store, mut got) = open(&dir);
        assert_eq!(canon(&got), canon(&want), "cut at {cut}");
        assert_eq!(std::fs::metadata(journal(&dir)).unwrap().len(), len);
        // Appends after the torn tail are read back.
        got.endpoints.insert("c5".into(), endpoint("c5", 5));
        store.commit(&mut got, &[Touched::Endpoint("c5")]).unwrap();
        drop(store);
        let (_s, again) = open(&dir);
        assert!(again.endpoints.contains_key("c5"), "cut at {cut}");
        // Back to the state before c5 for the next cut.
        let mut data = std::fs::read(journal(&dir)).unwrap();
        data.truncate(len as usize);
        std::fs::write(journal(&dir), &data).unwrap();
    }
}

#[test]
fn a_damaged_last_record_or_zeros_after_a_power_loss_are_dropped() {
    let dir = TempDir::new("store-zeros");
    let want = populated(&dir);
    let good = std::fs::read(journal(&dir)).unwrap();
    // The file grew but its data never reached the disk.
    let mut data = good.clone();
    data.extend_from_slice(&[0; 300]);
    std::fs::write(journal(&dir), &data).unwrap();
    let (_s, got) = open(&dir);
    assert_eq!(canon(&got), canon(&want));
    drop(_s);
    // A whole last record with garbage in it.
    let mut rec = Vec::new();
    frame(&mut rec, &RecordOut::PutEndpoint(&endpoint("c4", 4)));
    let n = rec.len();
    rec[n - 5] ^= 0xff;
    let mut data = good.clone();
    data.extend_from_slice(&rec);
    std::fs::write(journal(&dir), &data).unwrap();
    let (_s, got) = open(&dir);
    assert_eq!(canon(&got), canon(&want));
}

#[test]
fn a_damaged_record_before_others_names_the_file_and_offset() {
    let dir = TempDir::new("store-corrupt");
    populated(&dir);
    let mut data = std::fs::read(journal(&dir)).unwrap();
    // The second record (after the header): flip a payload byte.
    let header_len = FRAME + u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
    data[header_len + FRAME + 3] ^= 0x20;
    std::fs::write(journal(&dir), &data).unwrap();
    let err = match Store::open(&dir.0) {
        Ok(_) => panic!("a damaged record loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&journal(&dir).display().to_string()), "{err}");
    assert!(err.contains(&format!("offset {header_len}")), "{err}");
    assert!(err.contains("checksum"), "{err}");
    // An implausible length is damage too, not a torn tail.
    let mut data = std::fs::read(journal(&dir)).unwrap();
    data[header_len + FRAME + 3] ^= 0x20;
    data[header_len..header_len + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(journal(&dir), &data).unwrap();
    let err = Store::open(&dir.0).err().expect("refused").to_string();
    assert!(err.contains(&format!("offset {header_len}")), "{err}");
}

#[test]
fn a_compaction_interrupted_at_any_step_loads_the_same_state() {
    for stop in [Step::NewJournal, Step::Snapshot, Step::Done] {
        let dir = TempDir::new("store-compact");
        let want = populated(&dir);
        {
            let (mut store, mut st) = open(&dir);
            store.snapshot_until(&mut st, stop).unwrap();
            // kill -9 here: the store is dropped without running the rest of the compaction.
        }
        let (mut store, mut got) = open(&dir);
        assert_eq!(canon(&got), canon(&want), "crash after {stop:?}");
        assert!(!dir.0.join("state.journal.tmp").exists(), "{stop:?}");
        // The state goes on from there: a change after the restart survives the next one.
        got.endpoints.insert("c9".into(), endpoint("c9", 9));
        store.commit(&mut got, &[Touched::Endpoint("c9")]).unwrap();
        drop(store);
        let (_s, again) = open(&dir);
        assert_eq!(canon(&again), canon(&got), "after {stop:?}");
    }
}

#[test]
fn a_change_appends_the_same_bytes_whatever_the_number_of_endpoints() {
    let appended = |others: u32| {
        let dir = TempDir::new("store-size");
        let (mut store, mut st) = open(&dir);
        for i in 0..others {
            st.endpoints
                .insert(format!("o{i}"), endpoint(&format!("o{i}"), i + 10));
        }
        store.snapshot(&mut st).unwrap();
        let before = std::fs::metadata(journal(&dir)).unwrap().len();
        st.endpoints.insert("new".into(), endpoint("new", 1));
        store.commit(&mut st, &[Touched::Endpoint("new")]).unwrap();
        let e = st.endpoints.get_mut("new").unwrap();
        e.ports.push(binding(7, 9000));
        store
            .commit(
                &mut st,
                &[Touched::PortsAdded {
                    endpoint: "new",
                    ports: 1,
                    publish: 0,
                }],
            )
            .unwrap();
        std::fs::metadata(journal(&dir)).unwrap().len() - before
    };
    assert_eq!(appended(0), appended(2000));
}

#[test]
fn a_failed_append_records_nothing_and_the_next_commit_catches_up() {
    let dir = TempDir::new("store-fail");
    let mut want = populated(&dir);
    let (mut store, mut st) = open(&dir);
    // The journal cannot be opened: the commit fails and names it.
    std::fs::remove_file(journal(&dir)).unwrap();
    std::fs::create_dir(journal(&dir)).unwrap();
    st.endpoints.insert("c7".into(), endpoint("c7", 7));
    let err = store
        .commit(&mut st, &[Touched::Endpoint("c7")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("state.journal"), "{err}");
    std::fs::remove_dir(journal(&dir)).unwrap();
    // The caller keeps c7 anyway (as detach does); the next commit writes everything.
    st.held.clear();
    store.commit(&mut st, &[]).unwrap();
    drop(store);
    want.endpoints.insert("c7".into(), endpoint("c7", 7));
    want.held.clear();
    let (_s, got) = open(&dir);
    assert_eq!(canon(&got), canon(&want));
}

#[test]
fn the_journal_is_synced_within_the_interval() {
    let dir = TempDir::new("store-sync");
    let (mut store, mut st) = open(&dir);
    store.snapshot(&mut st).unwrap();
    st.endpoints.insert("c1".into(), endpoint("c1", 1));
    store.commit(&mut st, &[Touched::Endpoint("c1")]).unwrap();
    assert!(store.syncer.dirty.load(Ordering::Acquire));
    std::thread::sleep(SYNC_INTERVAL * 5);
    assert!(
        !store.syncer.dirty.load(Ordering::Acquire),
        "no fdatasync within {:?}",
        SYNC_INTERVAL * 5
    );
}
