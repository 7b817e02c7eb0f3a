//! Progress bars and notes on a terminal (bytes, rate, ETA); silence when stderr is not a
//! terminal, with `-q`, or with `--json` (notes then go to the log, shown with `-v`).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use ecobackup_core::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};

use crate::Context;

/// Bars for the long steps of one command.
pub struct Bars {
    visible: bool,
    running: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    /// Bars that show only on a terminal, and never with `-q` or `--json`.
    pub fn new(ctx: &Context) -> Bars {
        Bars {
            visible: std::io::stderr().is_terminal() && !ctx.quiet && !ctx.json,
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl Progress for Bars {
    fn started(&self, step: &str, total: Option<u64>) {
        if !self.visible {
            return;
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{msg:24} {bytes:>10} / ~{total_bytes:<10} {binary_bytes_per_sec:>12}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::no_length().with_style(
                ProgressStyle::with_template("{msg:24} {bytes:>10} {binary_bytes_per_sec:>12}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
        };
        bar.set_message(step.to_owned());
        if let Ok(mut running) = self.running.lock() {
            running.insert(step.to_owned(), bar);
        }
    }

    fn advanced(&self, step: &str, done: u64, _total: Option<u64>) {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = running.get(step) {
            // The total is an estimate (a database's size): the bar grows past it.
            if bar.length().is_some_and(|len| done > len) {
                bar.set_length(done);
            }
            bar.set_position(done);
        }
    }

    fn finished(&self, step: &str) {
        let bar = self.running.lock().ok().and_then(|mut r| r.remove(step));
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }

    fn note(&self, message: &str) {
        // On a terminal the operator reads it; elsewhere (cron) stderr is for errors only.
        if self.visible {
            eprintln!("{message}");
        } else {
            tracing::info!("{message}");
        }
    }
}
