//! The build display: on a terminal, one line per running build with its name and the
//! last line of its log under a line of counts; elsewhere, one plain line per event.

use std::collections::BTreeMap;
use std::io::{BufRead, Seek};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use nexis_build::{BuildEvent, DrvGraph, NodeIndex};
use nexis_store::{Store, error_chain};

use crate::output::Output;

/// Shows the events of one `build_graph` run.
pub(crate) struct BuildProgress<'a> {
    out: &'a Output,
    store: &'a Store,
    graph: &'a DrvGraph,
    multi: indicatif::MultiProgress,
    counts: indicatif::ProgressBar,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: BTreeMap<NodeIndex, (indicatif::ProgressBar, PathBuf)>,
    started: std::collections::BTreeSet<NodeIndex>,
    built: u64,
    failed: u64,
}

impl<'a> BuildProgress<'a> {
    /// A display for building `total` outputs of `graph`.
    pub(crate) fn new(out: &'a Output, store: &'a Store, graph: &'a DrvGraph, total: u64) -> Self {
        let multi = out.multi();
        let counts = multi.add(indicatif::ProgressBar::new(total));
        counts.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        counts.set_prefix("building");
        BuildProgress {
            out,
            store,
            graph,
            multi,
            counts,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether bars are drawn (else plain lines are printed).
    fn drawn(&self) -> bool {
        !self.multi.is_hidden()
    }

    /// Show `event`.
    pub(crate) fn event(&self, event: &BuildEvent<'_>) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = |n: NodeIndex| format!("{}-{}", self.graph[n].name, self.graph[n].version);
        match *event {
            BuildEvent::Started { node, drv } => {
                state.started.insert(node);
                if self.drawn() {
                    let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
                    bar.set_style(
                        indicatif::ProgressStyle::with_template("{prefix:>12.bold} {wide_msg}")
                            .expect("a valid template"),
                    );
                    bar.set_prefix(drv.name.clone());
                    let log = drv
                        .output_path()
                        .map(|p| nexis_build::log_file(self.store, &p))
                        .unwrap_or_default();
                    state.running.insert(node, (bar, log));
                } else {
                    self.out.status("building", &name(node));
                }
            }
            BuildEvent::Finished { node, built } => {
                if let Some((bar, _)) = state.running.remove(&node) {
                    bar.finish_and_clear();
                }
                // Outputs found valid when the run was planned were never to be built.
                if state.started.contains(&node) || !built.already_valid {
                    state.built += 1;
                    self.counts.inc(1);
                }
            }
            BuildEvent::Failed { node, error } => {
                if let Some((bar, _)) = state.running.remove(&node) {
                    bar.finish_and_clear();
                }
                state.failed += 1;
                self.counts.inc(1);
                self.multi.suspend(|| self.out.warn(&error_chain(error)));
            }
            BuildEvent::Skipped { node, because } => {
                self.counts.inc(1);
                self.multi.suspend(|| {
                    self.out.warn(&format!(
                        "not building {}: {} failed",
                        name(node),
                        name(because)
                    ));
                });
            }
        }
        self.counts.set_message(format!(
            "{} running, {} built, {} failed",
            state.running.len(),
            state.built,
            state.failed
        ));
    }

    /// Until `done` is set, show the last line of each running build's log every 200 ms.
    pub(crate) fn follow_logs(&self, done: &std::sync::atomic::AtomicBool) {
        if !self.drawn() {
            return;
        }
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let running: Vec<(indicatif::ProgressBar, PathBuf)> = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .running
                .values()
                .cloned()
                .collect();
            for (bar, log) in running {
                if let Some(line) = last_line(&log) {
                    bar.set_message(line);
                }
                bar.tick();
            }
        }
        self.counts.finish_and_clear();
    }
}

/// The last non-empty line of the file at `path` (from its last 4 KiB).
fn last_line(path: &std::path::Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(std::io::SeekFrom::Start(len.saturating_sub(4096)))
        .ok()?;
    std::io::BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .last()
        .map(|l| String::from_utf8_lossy(&l).into_owned())
}
