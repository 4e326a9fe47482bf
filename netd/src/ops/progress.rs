//! Progress output for long operations (a bulk publish, the daemon's start-up reconcile): a
//! spinner with the elapsed time on stderr while the operation runs and, for a counted one,
//! "k of N" and the rate; erased when it ends, or, when the count reached N, left as the last
//! line ("N of N ... in 1.2s"). Only on a terminal: with stderr redirected (scripts, logs,
//! tests) or `--quiet` nothing is written, so the output a program reads never holds carriage
//! returns.

use std::io::{IsTerminal as _, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

static QUIET: AtomicBool = AtomicBool::new(false);

/// How far a counted operation is ("k of N endpoints"), set by the code doing it and shown by
/// the process's running [`Progress`] line. Uncounted (N = 0) the line shows no count.
pub struct Count {
    done: AtomicU64,
    total: AtomicU64,
    /// What the count is of (`"ports"`) and whose operation it is (`"publish web"`).
    names: Mutex<(String, String)>,
}

/// A [`Count`] as `GET /v1/progress` answers it: the daemon's current (or last) counted
/// operation, which `netd publish` shows on the client's terminal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountView {
    /// Whose operation: e.g. `publish web` (empty when none was counted yet).
    pub of: String,
    pub done: u64,
    /// 0: none counted.
    pub total: u64,
    pub unit: String,
}

/// The process's count ([`Progress::start`] shows it).
pub static STEPS: Count = Count::new();

impl Count {
    pub const fn new() -> Self {
        Self {
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            names: Mutex::new((String::new(), String::new())),
        }
    }

    /// A counted operation of `total` `unit`s starts (none done yet).
    pub fn begin(&self, total: u64, unit: &str) {
        self.begin_for("", total, unit);
    }

    /// [`Count::begin`] of the operation `of` (e.g. `publish web`), so a client asking for the
    /// daemon's count can tell its own operation from another one.
    pub fn begin_for(&self, of: &str, total: u64, unit: &str) {
        *self.names.lock().unwrap_or_else(|e| e.into_inner()) = (of.to_owned(), unit.to_owned());
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// One more done.
    pub fn step(&self) {
        self.step_by(1);
    }

    /// `n` more done.
    pub fn step_by(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// All done (the operation finished its last, uncounted part too).
    pub fn finish(&self) {
        self.done
            .store(self.total.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Shows `v` (a count read from elsewhere, the daemon's) as this one.
    pub fn mirror(&self, v: &CountView) {
        *self.names.lock().unwrap_or_else(|e| e.into_inner()) = (v.of.clone(), v.unit.clone());
        self.total.store(v.total, Ordering::Relaxed);
        self.done.store(v.done, Ordering::Relaxed);
    }

    /// The counted operation ended: the line keeps showing where it got (with all N done,
    /// the summary [`Progress`] leaves when it is dropped), until [`Count::clear`].
    pub fn end(&self) {}

    /// No count: the line shows none.
    pub fn clear(&self) {
        self.total.store(0, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }

    pub fn view(&self) -> CountView {
        let (of, unit) = self.names.lock().unwrap_or_else(|e| e.into_inner()).clone();
        CountView {
            of,
            unit,
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
        }
    }
}

impl Default for Count {
    fn default() -> Self {
        Self::new()
    }
}

/// One frame of the line: `| label: k of N unit, R/s (1.2s)`, or without the count when there
/// is none (k never shown above N; the rate once something is done).
fn render(frame: char, label: &str, c: &CountView, secs: f64) -> String {
    if c.total == 0 {
        return format!("\r{frame} {label} ({secs:.1}s)");
    }
    let (k, total) = (c.done.min(c.total), c.total);
    let unit = if c.unit.is_empty() {
        String::new()
    } else {
        format!(" {}", c.unit)
    };
    let rate = if k > 0 && secs > 0.0 {
        format!(", {:.0}/s", k as f64 / secs)
    } else {
        String::new()
    };
    // Erase to the end: a shorter line must not leave the previous one's tail.
    format!("\r{frame} {label}: {k} of {total}{unit}{rate} ({secs:.1}s)\x1b[K")
}

/// The line left when a counted operation reached N: `label: N of N unit in 1.2s (R/s)`.
fn render_done(label: &str, c: &CountView, secs: f64) -> String {
    let unit = if c.unit.is_empty() {
        String::new()
    } else {
        format!(" {}", c.unit)
    };
    let rate = if secs > 0.0 {
        format!(" ({:.0}/s)", c.total as f64 / secs)
    } else {
        String::new()
    };
    format!(
        "\r{label}: {t} of {t}{unit} in {secs:.1}s{rate}\x1b[K\n",
        t = c.total
    )
}

/// Whether [`Progress::start`] shows anything (stderr is a terminal, no `--quiet`): a caller
/// can skip the work of feeding a count nobody sees.
pub fn enabled() -> bool {
    !QUIET.load(Ordering::Relaxed) && std::io::stderr().is_terminal()
}

/// `--quiet`: no progress output in this process.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// A running progress line; dropping it erases the line.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Shows `label` on stderr if stderr is a terminal and `--quiet` was not given, with the
    /// process's count ([`STEPS`]), cleared first: the operation begins counting itself.
    pub fn start(label: String) -> Self {
        STEPS.clear();
        Self::start_on(
            label,
            enabled(),
            std::io::stderr(),
            Duration::from_millis(200),
            &STEPS,
        )
    }

    /// Shows `label` (and `count`'s "k of N") on `out` every `every` when `on`; nothing at all
    /// otherwise.
    pub fn start_on<W: Write + Send + 'static>(
        label: String,
        on: bool,
        mut out: W,
        every: Duration,
        count: &'static Count,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        if !on {
            return Self { stop, thread: None };
        }
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let frames = ['|', '/', '-', '\\'];
            let mut i = 0;
            loop {
                let line = render(
                    frames[i % frames.len()],
                    &label,
                    &count.view(),
                    t0.elapsed().as_secs_f64(),
                );
                let _ = out.write_all(line.as_bytes());
                let _ = out.flush();
                i += 1;
                let until = Instant::now() + every;
                while Instant::now() < until {
                    if s.load(Ordering::Relaxed) {
                        let c = count.view();
                        if c.total > 0 && c.done >= c.total {
                            // Counted to the end: the line stays, as the operation's summary.
                            let done = render_done(&label, &c, t0.elapsed().as_secs_f64());
                            let _ = out.write_all(done.as_bytes());
                        } else {
                            // Erase the line: what follows starts on a clean one.
                            let _ = write!(out, "\r\x1b[K");
                        }
                        let _ = out.flush();
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn off_the_terminal_nothing_is_written() {
        let b = Buf::default();
        static C: Count = Count::new();
        let p = Progress::start_on("publishing".into(), false, b.clone(), Duration::ZERO, &C);
        std::thread::sleep(Duration::from_millis(50));
        drop(p);
        assert!(b.0.lock().unwrap().is_empty());
    }

    #[test]
    fn on_a_terminal_the_line_updates_and_is_erased() {
        let b = Buf::default();
        let p = Progress::start_on(
            "publishing 1000-2000:80".into(),
            true,
            b.clone(),
            Duration::from_millis(20),
            &NONE,
        );
        std::thread::sleep(Duration::from_millis(120));
        drop(p);
        let s = String::from_utf8(b.0.lock().unwrap().clone()).unwrap();
        assert!(s.matches("publishing 1000-2000:80 (").count() >= 2, "{s:?}");
        assert!(s.ends_with("\r\x1b[K"), "{s:?}");
    }

    static NONE: Count = Count::new();

    #[test]
    fn the_count_renders_as_k_of_n() {
        let c = Count::new();
        assert_eq!(
            render('|', "starting", &c.view(), 1.24),
            "\r| starting (1.2s)"
        );
        c.begin(40, "endpoints");
        assert_eq!(
            render('/', "starting", &c.view(), 0.0),
            "\r/ starting: 0 of 40 endpoints (0.0s)\x1b[K"
        );
        for _ in 0..3 {
            c.step();
        }
        assert_eq!(
            render('-', "starting", &c.view(), 2.0),
            "\r- starting: 3 of 40 endpoints, 2/s (2.0s)\x1b[K"
        );
        // Never more than N; no unit, no word.
        c.begin(2, "");
        for _ in 0..5 {
            c.step();
        }
        assert_eq!(
            render('|', "x", &c.view(), 0.0),
            "\r| x: 2 of 2 (0.0s)\x1b[K"
        );
        assert_eq!(
            render_done("x", &c.view(), 0.5),
            "\rx: 2 of 2 in 0.5s (4/s)\x1b[K\n"
        );
        c.end();
        assert_eq!(
            render('|', "x", &c.view(), 0.0),
            "\r| x: 2 of 2 (0.0s)\x1b[K"
        );
        c.clear();
        assert_eq!(render('|', "x", &c.view(), 0.0), "\r| x (0.0s)");
        // A count read back from the daemon.
        c.mirror(&CountView {
            of: "publish web".into(),
            done: 7,
            total: 500,
            unit: "ports".into(),
        });
        assert_eq!(
            render('/', "publishing", &c.view(), 1.0),
            "\r/ publishing: 7 of 500 ports, 7/s (1.0s)\x1b[K"
        );
        assert_eq!(c.view().of, "publish web");
    }

    #[test]
    fn a_running_line_follows_the_count() {
        static C: Count = Count::new();
        let b = Buf::default();
        C.begin(5, "endpoints");
        let p = Progress::start_on(
            "reconciling".into(),
            true,
            b.clone(),
            Duration::from_millis(10),
            &C,
        );
        std::thread::sleep(Duration::from_millis(60));
        C.step();
        C.step();
        std::thread::sleep(Duration::from_millis(60));
        drop(p);
        let s = String::from_utf8(b.0.lock().unwrap().clone()).unwrap();
        assert!(s.contains("reconciling: 0 of 5 endpoints ("), "{s:?}");
        assert!(s.contains("reconciling: 2 of 5 endpoints, "), "{s:?}");
        assert!(s.ends_with("\r\x1b[K"), "not all done, erased: {s:?}");
    }

    #[test]
    fn a_finished_count_leaves_its_summary() {
        static C: Count = Count::new();
        let b = Buf::default();
        C.begin_for("publish c", 3, "ports");
        let p = Progress::start_on(
            "publishing".into(),
            true,
            b.clone(),
            Duration::from_millis(10),
            &C,
        );
        C.step();
        std::thread::sleep(Duration::from_millis(40));
        C.finish();
        C.end();
        drop(p);
        let s = String::from_utf8(b.0.lock().unwrap().clone()).unwrap();
        assert!(s.contains("publishing: 1 of 3 ports, "), "{s:?}");
        let last = s.rsplit('\r').next().unwrap();
        assert!(
            last.starts_with("publishing: 3 of 3 ports in ") && last.ends_with("/s)\x1b[K\n"),
            "{s:?}"
        );
    }

    #[test]
    fn quiet_turns_it_off() {
        set_quiet(true);
        // stderr under `cargo test` is not a terminal either; quiet alone must suffice.
        assert!(Progress::start("x".into()).thread.is_none());
        set_quiet(false);
    }
}
