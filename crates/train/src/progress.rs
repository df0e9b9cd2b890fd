//! Progress of the long stages: a bar on a terminal; anywhere else (Kubernetes logs, CI, a file) a
//! plain log line about every 30 s with what is done, the rate and the time left, since a bar
//! drawn there would be either hidden or a wall of control characters.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain line is logged.
const EVERY: Duration = Duration::from_secs(30);

pub struct Progress {
    bar: ProgressBar,
    /// Off a terminal: the plain lines' state.
    lines: Option<Mutex<Lines>>,
}

struct Lines {
    what: String,
    total: u64,
    done: u64,
    started: Instant,
    logged: Instant,
}

pub fn progress_bar(len: u64, message: &str) -> Progress {
    if !std::io::stderr().is_terminal() {
        let now = Instant::now();
        let lines = Lines { what: message.to_string(), total: len, done: 0, started: now, logged: now };
        return Progress { bar: ProgressBar::hidden(), lines: Some(Mutex::new(lines)) };
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} [{per_sec}, ETA {eta}]") {
        bar.set_style(style);
    }
    bar.set_message(message.to_string());
    Progress { bar, lines: None }
}

impl Progress {
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if let Some(lines) = &self.lines {
            let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
            l.done += n;
            if l.logged.elapsed() >= EVERY {
                l.logged = Instant::now();
                tracing::info!("{}: {}", l.what, line(l.done, l.total, l.started.elapsed()));
            }
        }
    }

    pub fn set_message(&self, message: String) {
        if let Some(lines) = &self.lines {
            lines.lock().unwrap_or_else(|e| e.into_inner()).what.clone_from(&message);
        }
        self.bar.set_message(message);
    }

    /// Runs `f` (which logs) with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}

/// "1200/5000 (40.0/s, 1m 35s left)".
fn line(done: u64, total: u64, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let left = if rate > 0.0 { total.saturating_sub(done) as f64 / rate } else { f64::INFINITY };
    let left = if left.is_finite() {
        let s = left.round() as u64;
        match s {
            0..60 => format!("{s}s"),
            60..3600 => format!("{}m {}s", s / 60, s % 60),
            _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
        }
    } else {
        "unknown".to_string()
    };
    format!("{done}/{total} ({rate:.1}/s, {left} left)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_what_is_done_the_rate_and_the_time_left() {
        assert_eq!(line(1200, 5000, Duration::from_secs(30)), "1200/5000 (40.0/s, 1m 35s left)");
        assert_eq!(line(10, 100_000, Duration::from_secs(1)), "10/100000 (10.0/s, 2h 46m left)");
        assert_eq!(line(0, 10, Duration::from_secs(5)), "0/10 (0.0/s, unknown left)");
        assert_eq!(line(10, 10, Duration::from_secs(5)), "10/10 (2.0/s, 0s left)");
    }
}
