//! Progress output for long operations (a bulk publish, the daemon's start-up reconcile): a
//! spinner with the elapsed time on stderr while the operation runs, erased when it ends.
//! Only on a terminal: with stderr redirected (scripts, logs, tests) or `--quiet` nothing is
//! written, so the output a program reads never holds carriage returns.

use std::io::{IsTerminal as _, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static QUIET: AtomicBool = AtomicBool::new(false);

/// How far a counted operation is ("k of N endpoints"), set by the code doing it and shown by
/// the process's running [`Progress`] line. Uncounted (N = 0) the line shows no count.
pub struct Count {
    done: AtomicU64,
    total: AtomicU64,
    unit: Mutex<&'static str>,
}

/// The process's count ([`Progress::start`] shows it).
pub static STEPS: Count = Count::new();

impl Count {
    pub const fn new() -> Self {
        Self {
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            unit: Mutex::new(""),
        }
    }

    /// A counted operation of `total` `unit`s starts (none done yet).
    pub fn begin(&self, total: u64, unit: &'static str) {
        *self.unit.lock().unwrap_or_else(|e| e.into_inner()) = unit;
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// One more done.
    pub fn step(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// The operation ended: the line shows no count again.
    pub fn end(&self) {
        self.total.store(0, Ordering::Relaxed);
    }

    fn get(&self) -> (u64, u64, &'static str) {
        let unit = *self.unit.lock().unwrap_or_else(|e| e.into_inner());
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            unit,
        )
    }
}

impl Default for Count {
    fn default() -> Self {
        Self::new()
    }
}

/// One frame of the line: `| label: k of N unit (1.2s)`, or without the count when there is
/// none (k never shown above N).
fn render(frame: char, label: &str, (done, total, unit): (u64, u64, &str), secs: f64) -> String {
    if total == 0 {
        return format!("\r{frame} {label} ({secs:.1}s)");
    }
    let k = done.min(total);
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    // Erase to the end: a shorter line must not leave the previous one's tail.
    format!("\r{frame} {label}: {k} of {total}{unit} ({secs:.1}s)\x1b[K")
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
    /// Shows `label` on stderr if stderr is a terminal and `--quiet` was not given.
    pub fn start(label: String) -> Self {
        let on = !QUIET.load(Ordering::Relaxed) && std::io::stderr().is_terminal();
        Self::start_on(
            label,
            on,
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
                    count.get(),
                    t0.elapsed().as_secs_f64(),
                );
                let _ = out.write_all(line.as_bytes());
                let _ = out.flush();
                i += 1;
                let until = Instant::now() + every;
                while Instant::now() < until {
                    if s.load(Ordering::Relaxed) {
                        // Erase the line: what follows starts on a clean one.
                        let _ = write!(out, "\r\x1b[K");
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
            render('|', "starting", c.get(), 1.24),
            "\r| starting (1.2s)"
        );
        c.begin(40, "endpoints");
        assert_eq!(
            render('/', "starting", c.get(), 0.0),
            "\r/ starting: 0 of 40 endpoints (0.0s)\x1b[K"
        );
        for _ in 0..3 {
            c.step();
        }
        assert_eq!(
            render('-', "starting", c.get(), 2.04),
            "\r- starting: 3 of 40 endpoints (2.0s)\x1b[K"
        );
        // Never more than N; no unit, no word.
        c.begin(2, "");
        for _ in 0..5 {
            c.step();
        }
        assert_eq!(render('|', "x", c.get(), 0.0), "\r| x: 2 of 2 (0.0s)\x1b[K");
        c.end();
        assert_eq!(render('|', "x", c.get(), 0.0), "\r| x (0.0s)");
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
        assert!(s.contains("reconciling: 2 of 5 endpoints ("), "{s:?}");
        assert!(s.ends_with("\r\x1b[K"), "{s:?}");
    }

    #[test]
    fn quiet_turns_it_off() {
        set_quiet(true);
        // stderr under `cargo test` is not a terminal either; quiet alone must suffice.
        assert!(Progress::start("x".into()).thread.is_none());
        set_quiet(false);
    }
}
