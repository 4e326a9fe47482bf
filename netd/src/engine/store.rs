//! Persistence whose cost per change does not grow with the number of endpoints: a snapshot
//! (`state.json`, the format of the previous releases, which therefore loads as is) plus an
//! append-only journal of typed change records (`state.journal`).
//!
//! Why a journal and not an embedded store such as redb: the state is a few maps of small
//! records that the engine keeps in memory anyway and changes one endpoint at a time; a journal
//! of those changes is one `write(2)` per request, needs no new dependency with its own on-disk
//! format to migrate, and keeps the snapshot in the readable JSON that earlier releases wrote.
//!
//! Record framing: `u32 length (LE) | u32 crc32 of the payload (LE) | payload (JSON)`. The
//! first record is a header naming the snapshot generation the journal continues; a journal of
//! another generation is stale (its changes are in the snapshot) and is ignored.
//!
//! Durability: a record is written (to the page cache) before the engine answers, so kill -9
//! at any moment loses no acknowledged change; a background thread fdatasyncs the journal
//! within [`SYNC_INTERVAL`] of a change, so a power loss loses at most that much. A torn tail
//! (a record cut short, or zeros where the file was extended but its data never reached the
//! disk) is dropped on load; a damaged record with valid records after it is an error naming
//! the file and the offset.
//!
//! Compaction, when the journal grows past [`COMPACT_FACTOR`] times the snapshot (and
//! [`COMPACT_MIN`]): (1) a new journal with the next generation's header is written to
//! `state.journal.tmp` and fsynced, (2) the snapshot with that generation replaces
//! `state.json` (temp file, fsync, rename, directory fsync), (3) the new journal is renamed over
//! `state.journal` and the directory fsynced. A crash after (1) leaves the old snapshot and
//! journal; after (2) the new snapshot and a stale journal (ignored); a leftover temp journal is
//! removed on load.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::{Filters, NetworkState, STATE_VERSION, State, StateError, UserNetwork};

mod journal;
use journal::{Record, RecordOut, apply, frame, parse_journal};

/// How long an acknowledged change may wait for its fdatasync (what a power loss may lose).
pub const SYNC_INTERVAL: Duration = Duration::from_millis(20);
/// Compact when the journal is larger than this many times the snapshot...
const COMPACT_FACTOR: u64 = 4;
/// ...and larger than this.
const COMPACT_MIN: u64 = 4 << 20;

/// What a change touched, besides the daemon-wide part of the state (always compared).
#[derive(Debug, Clone, Copy)]
pub enum Touched<'a> {
    /// This endpoint was added, changed or removed: its whole record is written.
    Endpoint(&'a str),
    /// The endpoint's last `ports` bindings and last `publish` specs are new (`netd publish`):
    /// only they are written, whatever the endpoint already holds.
    PortsAdded {
        endpoint: &'a str,
        ports: usize,
        publish: usize,
    },
}

/// The daemon-wide part of the state: small, compared on each commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    network: Option<NetworkState>,
    filters: Filters,
    networks: BTreeMap<String, UserNetwork>,
    next_binding_id: u32,
    /// Held IPv6 addresses (few: Docker endpoints between RequestAddress and Join); a journal
    /// from before them has none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    held6: BTreeMap<std::net::Ipv6Addr, String>,
}

impl Meta {
    fn of(s: &State) -> Self {
        Self {
            network: s.network.clone(),
            filters: s.filters.clone(),
            networks: s.networks.clone(),
            next_binding_id: s.next_binding_id,
            held6: s.held6.clone(),
        }
    }
}

/// The background fdatasync: the journal file of the last append, and whether it has unsynced
/// data.
struct Syncer {
    file: Mutex<Option<Arc<File>>>,
    dirty: AtomicBool,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Syncer {
    fn sync_now(&self) -> io::Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let f = self.file.lock().expect("syncer lock").clone();
        match f {
            Some(f) => f.sync_data().inspect_err(|_| {
                self.dirty.store(true, Ordering::Release);
            }),
            None => Ok(()),
        }
    }

    fn run(self: Arc<Self>, path: PathBuf) {
        let mut stop = self.stop.lock().expect("syncer lock");
        loop {
            let (s, _) = self
                .wake
                .wait_timeout(stop, SYNC_INTERVAL)
                .expect("syncer lock");
            stop = s;
            drop(stop);
            if let Err(e) = self.sync_now() {
                tracing::warn!("cannot sync state journal {}: {e}", path.display());
            }
            stop = self.stop.lock().expect("syncer lock");
            if *stop {
                return;
            }
        }
    }
}

/// Where a compaction stops (tests simulate a crash at each point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    NewJournal,
    Snapshot,
    Done,
}

pub struct Store {
    snapshot: PathBuf,
    journal: PathBuf,
    journal_tmp: PathBuf,
    generation: u64,
    journal_len: u64,
    snapshot_len: u64,
    meta: Meta,
    held: BTreeMap<Ipv4Addr, String>,
    /// A failed append left the journal behind the state: the next commit writes a snapshot.
    behind: bool,
    syncer: Arc<Syncer>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Store {
    /// Opens the state in `state_dir` (snapshot, then the journal's records on top of it) and
    /// starts the background sync. Nothing is written: the caller commits or snapshots.
    pub fn open(state_dir: &Path) -> Result<(Self, State), StateError> {
        let snapshot = state_dir.join("state.json");
        let journal = state_dir.join("state.journal");
        let journal_tmp = state_dir.join("state.journal.tmp");
        let (mut state, snapshot_len) = load_snapshot(&snapshot)?;
        // An interrupted compaction's new journal: its snapshot either never replaced the old
        // one or did, and in both cases the journal in place says what to replay.
        match std::fs::remove_file(&journal_tmp) {
            Ok(()) => tracing::info!("removed {} (interrupted compaction)", journal_tmp.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StateError::Write {
                    path: journal_tmp,
                    source,
                });
            }
        }
        let generation = state.journal_gen;
        let mut journal_len = 0;
        let mut stale = true;
        match std::fs::read(&journal) {
            Ok(data) => {
                let parsed = parse_journal(&journal, &data)?;
                let header = match parsed.records.first() {
                    Some((_, Record::Header { generation })) => Some(*generation),
                    Some((off, _)) => {
                        return Err(StateError::Corrupt {
                            path: journal.clone(),
                            offset: *off,
                            why: "the first record is not a header".into(),
                        });
                    }
                    None => None,
                };
                match header {
                    Some(g) if g == generation => {
                        stale = false;
                        let n = parsed.records.len();
                        for (_, rec) in parsed.records {
                            apply(&mut state, rec);
                        }
                        if parsed.valid_len < data.len() as u64 {
                            tracing::warn!(
                                "{}: dropped a torn record at offset {} (a crash during an append)",
                                journal.display(),
                                parsed.valid_len
                            );
                            truncate(&journal, parsed.valid_len)?;
                        }
                        journal_len = parsed.valid_len;
                        tracing::debug!(records = n, "replayed {}", journal.display());
                    }
                    Some(g) if g > generation => {
                        return Err(StateError::Corrupt {
                            path: journal.clone(),
                            offset: 0,
                            why: format!(
                                "journal generation {g} is newer than snapshot {}'s {generation} (the snapshot was replaced by an older one?)",
                                snapshot.display()
                            ),
                        });
                    }
                    // Older (its changes are in the snapshot) or no header (torn at once).
                    _ => {}
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StateError::Read {
                    path: journal,
                    source,
                });
            }
        }
        if state.version != STATE_VERSION {
            return Err(StateError::Version {
                path: snapshot,
                found: state.version,
            });
        }
        let syncer = Arc::new(Syncer {
            file: Mutex::new(None),
            dirty: AtomicBool::new(false),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let s2 = syncer.clone();
        let jp = journal.clone();
        let thread = std::thread::Builder::new()
            .name("netd-state-sync".into())
            .spawn(move || s2.run(jp))
            .map_err(|source| StateError::Write {
                path: journal.clone(),
                source,
            })?;
        let store = Self {
            snapshot,
            journal,
            journal_tmp,
            generation,
            journal_len,
            snapshot_len,
            meta: Meta::of(&state),
            held: state.held.clone(),
            // A missing or stale journal is replaced by the first commit's snapshot.
            behind: stale,
            syncer,
            thread: Some(thread),
        };
        Ok((store, state))
    }

    /// Records a change: the daemon-wide part when it differs from the last commit, and what
    /// `touched` names. On failure nothing is recorded (a partial append is cut off again).
    pub fn commit(&mut self, state: &mut State, touched: &[Touched<'_>]) -> Result<(), StateError> {
        if self.behind {
            return self.snapshot(state);
        }
        let mut buf = Vec::new();
        let meta = Meta::of(state);
        let meta_changed = meta != self.meta;
        if meta_changed {
            frame(&mut buf, &RecordOut::Meta(&meta));
        }
        let held_changed = state.held != self.held;
        if held_changed {
            frame(&mut buf, &RecordOut::Held(&state.held));
        }
        for t in touched {
            match *t {
                Touched::Endpoint(name) => match state.endpoints.get(name) {
                    Some(e) => frame(&mut buf, &RecordOut::PutEndpoint(e)),
                    None => frame(&mut buf, &RecordOut::RemoveEndpoint { name }),
                },
                Touched::PortsAdded {
                    endpoint,
                    ports,
                    publish,
                } => {
                    let e = state
                        .endpoints
                        .get(endpoint)
                        .expect("ports were added to an endpoint that exists");
                    frame(
                        &mut buf,
                        &RecordOut::AddPorts {
                            endpoint,
                            ports: &e.ports[e.ports.len() - ports..],
                            publish: &e.publish[e.publish.len() - publish..],
                        },
                    );
                }
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.append(&buf)?;
        if meta_changed {
            self.meta = meta;
        }
        if held_changed {
            self.held = state.held.clone();
        }
        if self.journal_len > COMPACT_MIN
            && self.journal_len > COMPACT_FACTOR.saturating_mul(self.snapshot_len)
        {
            // The change is already recorded: a failed compaction is not the request's failure.
            if let Err(e) = self.snapshot(state) {
                tracing::warn!("state compaction failed (the journal keeps growing): {e}");
            }
        }
        Ok(())
    }

    fn append(&mut self, buf: &[u8]) -> Result<(), StateError> {
        let werr = |source| StateError::Write {
            path: self.journal.clone(),
            source,
        };
        // Opened by path on each append: a journal replaced under the daemon is noticed. A
        // failed append may leave the caller with a change the journal lacks (detach keeps
        // going): the next commit writes a whole snapshot.
        let mut f = match OpenOptions::new().append(true).open(&self.journal) {
            Ok(f) => f,
            Err(e) => {
                self.behind = true;
                return Err(werr(e));
            }
        };
        if let Err(e) = f.write_all(buf) {
            // Cut off what was written, so that no damaged record sits before later ones.
            let _ = f.set_len(self.journal_len);
            self.behind = true;
            return Err(werr(e));
        }
        self.journal_len += buf.len() as u64;
        *self.syncer.file.lock().expect("syncer lock") = Some(Arc::new(f));
        self.syncer.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Writes the whole state as a new snapshot generation with an empty journal (compaction;
    /// also how a state from before the journal, or a stale journal, is taken over).
    pub fn snapshot(&mut self, state: &mut State) -> Result<(), StateError> {
        self.snapshot_until(state, Step::Done)
    }

    fn snapshot_until(&mut self, state: &mut State, stop: Step) -> Result<(), StateError> {
        let generation = self.generation + 1;
        let mut header = Vec::new();
        frame(&mut header, &RecordOut::Header { generation });
        write_synced(&self.journal_tmp, &header).map_err(|source| StateError::Write {
            path: self.journal_tmp.clone(),
            source,
        })?;
        if stop == Step::NewJournal {
            return Ok(());
        }
        let old_gen = state.journal_gen;
        state.journal_gen = generation;
        // Compact: with thousands of published ports the pretty form is several times larger.
        // `netd inspect` is the readable view.
        let json = serde_json::to_string(&*state).expect("state serialises");
        if let Err(source) = crate::fsutil::write_atomic(&self.snapshot, &json) {
            state.journal_gen = old_gen;
            let _ = std::fs::remove_file(&self.journal_tmp);
            self.behind = true;
            return Err(StateError::Write {
                path: self.snapshot.clone(),
                source,
            });
        }
        // From here the new snapshot is the state: the old journal is stale whatever follows.
        self.generation = generation;
        self.snapshot_len = json.len() as u64;
        self.meta = Meta::of(state);
        self.held = state.held.clone();
        if stop == Step::Snapshot {
            return Ok(());
        }
        let renamed = std::fs::rename(&self.journal_tmp, &self.journal)
            .and_then(|()| sync_dir(&self.journal));
        if let Err(source) = renamed {
            self.behind = true;
            return Err(StateError::Write {
                path: self.journal.clone(),
                source,
            });
        }
        self.journal_len = header.len() as u64;
        self.behind = false;
        // The old journal's unsynced data no longer matters; the new one is synced.
        *self.syncer.file.lock().expect("syncer lock") = None;
        self.syncer.dirty.store(false, Ordering::Release);
        Ok(())
    }

    /// Syncs the journal now (before the daemon exits).
    pub fn flush(&self) -> Result<(), StateError> {
        self.syncer.sync_now().map_err(|source| StateError::Write {
            path: self.journal.clone(),
            source,
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        *self.syncer.stop.lock().expect("syncer lock") = true;
        self.syncer.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.flush();
    }
}

fn load_snapshot(path: &Path) -> Result<(State, u64), StateError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((State::default(), 0)),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let state: State = serde_json::from_slice(&data).map_err(|source| StateError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    if state.version != STATE_VERSION {
        return Err(StateError::Version {
            path: path.to_path_buf(),
            found: state.version,
        });
    }
    Ok((state, data.len() as u64))
}

fn truncate(path: &Path, len: u64) -> Result<(), StateError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()))
        .map_err(|source| StateError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Creates or truncates `path`, writes `data` and fsyncs it.
fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
