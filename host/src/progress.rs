//! Progress of a long run: a bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reports the steps of a run on stderr.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    every: usize,
    start: Instant,
    window: (f64, usize),
}

impl Progress {
    /// A report of `total` steps, starting after step `done`. Plain lines come every
    /// tenth of the run.
    pub fn new(done: usize, total: usize, label: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(total as u64),
                ProgressDrawTarget::stderr_with_hz(10),
            );
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
            )
            .expect("the template is valid")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_owned());
            bar.set_position(done as u64);
            bar
        });
        Progress {
            bar,
            total,
            every: (total / 10).max(1),
            start: Instant::now(),
            window: (0.0, 0),
        }
    }

    /// Records the loss of step `step` (counted from 1), and the validation loss if
    /// one was measured.
    pub fn step(&mut self, step: usize, loss: f64, val: Option<f64>) {
        self.window.0 += loss;
        self.window.1 += 1;
        let mean = self.window.0 / self.window.1 as f64;
        let val = val.map(|v| format!(" | val {v:.4}")).unwrap_or_default();
        if let Some(bar) = &self.bar {
            bar.set_position(step as u64);
            if step.is_multiple_of(10) || step == self.total || !val.is_empty() {
                bar.set_message(format!("loss {mean:.4}{val}"));
            }
        } else if step.is_multiple_of(self.every) || step == self.total || !val.is_empty() {
            eprintln!(
                "step {step:>6}/{} | loss {mean:.4}{val} | {:.2} s",
                self.total,
                self.start.elapsed().as_secs_f64()
            );
        }
        if step.is_multiple_of(self.every) {
            self.window = (0.0, 0);
        }
    }

    /// Runs `f`, which prints to stderr, with the bar out of its way.
    pub fn suspend(&self, f: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Clears the bar; returns the time since the start.
    pub fn finish(self) -> Duration {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        self.start.elapsed()
    }
}
