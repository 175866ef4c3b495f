//! The build display: on a terminal, one line per running build with its name and the
//! last line of its log under a line of counts; elsewhere, one plain line per event.

use std::collections::BTreeMap;
use std::io::{BufRead, Seek};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use nexis_build::{BuildEvent, DrvGraph, InputEvent, InputProgress, NodeIndex};
use nexis_fetch::FetchEvent;
use nexis_store::{Store, error_chain};

use crate::output::Output;

/// Shows the events of one `build_graph` run.
pub(crate) struct BuildProgress<'a> {
    out: &'a Output,
    /// Each node's `name-version`, and its short name.
    names: Vec<(String, String)>,
    /// Each node's log file.
    logs: Vec<PathBuf>,
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
    pub(crate) fn new(out: &'a Output, store: &Store, graph: &DrvGraph, total: u64) -> Self {
        let multi = out.multi();
        let counts = multi.add(indicatif::ProgressBar::new(total));
        counts.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        counts.set_prefix("building");
        let names = graph
            .node_weights()
            .map(|d| (format!("{}-{}", d.name, d.version), d.name.clone()))
            .collect();
        let logs = graph
            .node_weights()
            .map(|d| {
                d.output_path()
                    .map(|p| nexis_build::log_file(store, &p))
                    .unwrap_or_default()
            })
            .collect();
        BuildProgress {
            out,
            names,
            logs,
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
        let name = |n: NodeIndex| self.names[n.index()].0.clone();
        match *event {
            BuildEvent::Started { node, .. } => {
                state.started.insert(node);
                if self.drawn() {
                    let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
                    bar.set_style(
                        indicatif::ProgressStyle::with_template("{prefix:>12.bold} {wide_msg}")
                            .expect("a valid template"),
                    );
                    bar.set_prefix(self.names[node.index()].1.clone());
                    state
                        .running
                        .insert(node, (bar, self.logs[node.index()].clone()));
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
        // Wake often enough to end as soon as the builds do; redraw every 200 ms.
        let mut tick = 0_u32;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            tick += 1;
            if !tick.is_multiple_of(10) {
                continue;
            }
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

/// A bar in `bars` for fetching `label`: what is being done, and bytes for downloads.
pub(crate) fn fetch_bar(bars: &indicatif::MultiProgress, label: &str) -> indicatif::ProgressBar {
    let bar = bars.add(indicatif::ProgressBar::no_length());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>12} {msg} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("a valid template"),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// Show `event` on `bar`.
pub(crate) fn show(bar: &indicatif::ProgressBar, event: FetchEvent) {
    match event {
        FetchEvent::Git => bar.set_message("fetching from git"),
        FetchEvent::GitObjects {
            objects,
            total,
            bytes,
        } => {
            match total {
                Some(total) => bar.set_message(format!("objects {objects}/{total}")),
                None => bar.set_message(format!("objects {objects}")),
            }
            bar.set_position(bytes);
        }
        FetchEvent::Download { received, total } => {
            bar.set_message("downloading");
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(received);
        }
        FetchEvent::Unpacking => bar.set_message("unpacking"),
        FetchEvent::Adding => bar.set_message("adding to the store"),
    }
}

/// Progress bars for the inputs fetched during an evaluation: one per input while it is
/// fetched, drawn only on a terminal.
pub(crate) fn input_progress(out: &Output) -> InputProgress {
    let bars = out.multi();
    let shown: Mutex<BTreeMap<String, indicatif::ProgressBar>> = Mutex::new(BTreeMap::new());
    Box::new(move |name, event| {
        let mut shown = shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            InputEvent::Fetch(event) => {
                let bar = shown
                    .entry(name.to_owned())
                    .or_insert_with(|| fetch_bar(&bars, name));
                show(bar, event);
            }
            InputEvent::Done => {
                if let Some(bar) = shown.remove(name) {
                    bar.finish_and_clear();
                }
            }
        }
    })
}
