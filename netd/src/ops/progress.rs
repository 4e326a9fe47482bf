//! Progress output for long operations (a bulk publish, the daemon's start-up reconcile): a
//! spinner with the elapsed time on stderr while the operation runs, erased when it ends.
//! Only on a terminal: with stderr redirected (scripts, logs, tests) or `--quiet` nothing is
//! written, so the output a program reads never holds carriage returns.

use std::io::{IsTerminal as _, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static QUIET: AtomicBool = AtomicBool::new(false);

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
        Self::start_on(label, on, std::io::stderr(), Duration::from_millis(200))
    }

    /// Shows `label` on `out` every `every` when `on`; nothing at all otherwise.
    pub fn start_on<W: Write + Send + 'static>(
        label: String,
        on: bool,
        mut out: W,
        every: Duration,
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
                let _ = write!(
                    out,
                    "\r{} {label} ({:.1}s)",
                    frames[i % frames.len()],
                    t0.elapsed().as_secs_f64()
                );
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
        let p = Progress::start_on("publishing".into(), false, b.clone(), Duration::ZERO);
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
        );
        std::thread::sleep(Duration::from_millis(120));
        drop(p);
        let s = String::from_utf8(b.0.lock().unwrap().clone()).unwrap();
        assert!(s.matches("publishing 1000-2000:80 (").count() >= 2, "{s:?}");
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
