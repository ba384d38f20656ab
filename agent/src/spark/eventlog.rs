//! Spark event logs → per-application usage samples.
//!
//! Reads every event log under the configured directories (`spark.eventLog.dir`):
//! - single JSON-lines files `<appId>`, and `<appId>.inprogress` while the app runs (read
//!   incrementally: only complete lines, from the last offset);
//! - zstd-compressed single files `<appId>.zstd` and Spark 4's rolling directories
//!   `eventlog_v2_<appId>/events_<n>_<appId>[.zstd]` (re-decoded whenever a file in them changes;
//!   a frame still being written is read as far as it goes).
//!
//! Other codecs (`.lz4`, `.snappy`, `.lzf`) are skipped. After every poll the usage of each
//! application that changed is shipped ([`super::usage::AppUsage::to_samples`]): at the end time
//! once ended, else at the poll time (running apps are re-sent every poll since their
//! core-seconds grow). After an agent restart ended applications are sent again, with the same
//! timestamps.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use pharos_model::otlp::encode_metrics;
use pharos_model::{Labels, Sample};
use serde::{Deserialize, Serialize};

use super::usage::AppUsage;
use crate::scrape::target::{MAX_SAMPLES_PER_PAYLOAD, now_ms};
use crate::sink::Signal;
use crate::teams::TeamLabeler;

/// The `spark_event_logs:` config section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SparkEventLogsConfig {
    /// Directories holding Spark event logs (the drivers' `spark.eventLog.dir`). Required.
    pub dirs: Vec<PathBuf>,
    /// Time between two looks for new events, in milliseconds. Default: `10000`.
    #[serde(default = "default_event_log_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

fn default_event_log_poll_interval_ms() -> u64 {
    10_000
}

impl SparkEventLogsConfig {
    /// Checks the section; errors name the field.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        if self.dirs.is_empty() {
            return Err(crate::config::ConfigError {
                field: "spark_event_logs.dirs".into(),
                message: "must name at least one directory".into(),
            });
        }
        if self.poll_interval_ms == 0 {
            return Err(crate::config::ConfigError {
                field: "spark_event_logs.poll_interval_ms".into(),
                message: "must be greater than 0".into(),
            });
        }
        Ok(())
    }
}

/// Modification time and size of each file of a source: a change means "read again".
type Stamp = Vec<(Option<SystemTime>, u64)>;

/// How one event log is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Layout {
    /// Plain JSON lines (possibly still growing).
    Lines,
    /// Whole files to decode, in order (zstd single file or rolling directory parts).
    Decoded(Vec<PathBuf>),
}

struct Source {
    layout: Layout,
    stamp: Stamp,
    usage: AppUsage,
    /// Plain files: bytes consumed and an unfinished last line.
    offset: u64,
    partial: Vec<u8>,
    /// What was shipped last (None: never).
    shipped: Option<AppUsage>,
}

/// All event logs of the configured directories and their usage.
pub struct EventLogReader {
    dirs: Vec<PathBuf>,
    sources: BTreeMap<PathBuf, Source>,
}

impl EventLogReader {
    /// A reader of `dirs`.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        EventLogReader { dirs, sources: BTreeMap::new() }
    }

    /// Usage of every application known so far, by event log path.
    pub fn usage(&self) -> impl Iterator<Item = (&Path, &AppUsage)> {
        self.sources.iter().map(|(p, s)| (p.as_path(), &s.usage))
    }

    /// Finds event logs and reads what is new. Returns the applications to ship now: those that
    /// changed since the last call plus those still running.
    pub fn poll(&mut self) -> Vec<AppUsage> {
        let found = self.discover();
        self.sources.retain(|p, _| found.contains_key(p));
        let mut out = Vec::new();
        for (path, layout) in found {
            let source = self.sources.entry(path.clone()).or_insert_with(|| Source {
                layout: layout.clone(),
                stamp: Vec::new(),
                usage: AppUsage::default(),
                offset: 0,
                partial: Vec::new(),
                shipped: None,
            });
            source.layout = layout;
            if let Err(error) = source.read(&path) {
                tracing::warn!(path = %path.display(), %error, "cannot read Spark event log");
            }
            if source.usage.app_id.is_empty() {
                continue; // no SparkListenerApplicationStart yet
            }
            let running = source.usage.end_ms.is_none();
            if running || source.shipped.as_ref() != Some(&source.usage) {
                source.shipped = Some(source.usage.clone());
                out.push(source.usage.clone());
            }
        }
        out
    }

    fn discover(&self) -> BTreeMap<PathBuf, Layout> {
        let mut found = BTreeMap::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || name.ends_with(".crc") {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    if name.starts_with("eventlog_v2_") {
                        found.insert(path.clone(), Layout::Decoded(rolling_parts(&path)));
                    }
                    continue;
                }
                let base = name.strip_suffix(".inprogress").unwrap_or(&name);
                if base.ends_with(".zstd") || base.ends_with(".zst") {
                    found.insert(path.clone(), Layout::Decoded(vec![path]));
                } else if [".lz4", ".snappy", ".lzf"].iter().any(|ext| base.ends_with(ext)) {
                    tracing::debug!(path = %path.display(), "skipping event log with an unsupported codec");
                } else {
                    found.insert(path, Layout::Lines);
                }
            }
        }
        found
    }
}

/// `events_<n>_<appId>[.zstd]` files of a rolling directory, in `n` order.
fn rolling_parts(dir: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("events_")?.split('_').next()?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    parts.sort();
    parts.into_iter().map(|(_, p)| p).collect()
}

fn stamp_of(paths: &[PathBuf]) -> Stamp {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| (m.modified().ok(), m.len())).unwrap_or((None, 0)))
        .collect()
}

impl Source {
    fn read(&mut self, path: &Path) -> std::io::Result<()> {
        match self.layout.clone() {
            Layout::Lines => self.read_lines(path),
            Layout::Decoded(parts) => {
                let stamp = stamp_of(&parts);
                if stamp == self.stamp {
                    return Ok(());
                }
                let mut usage = AppUsage::default();
                for part in &parts {
                    let bytes = decode(part)?;
                    // A part still being written ends in an incomplete line: leave it for later.
                    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(&bytes[..0], |i| &bytes[..=i]);
                    for line in complete.split(|b| *b == b'\n') {
                        if let Ok(line) = std::str::from_utf8(line)
                            && !line.trim().is_empty() {
                                usage.apply_line(line);
                            }
                    }
                }
                self.usage = usage;
                self.stamp = stamp;
                Ok(())
            }
        }
    }

    fn read_lines(&mut self, path: &Path) -> std::io::Result<()> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        if len < self.offset {
            // Replaced by a shorter file: start over.
            self.offset = 0;
            self.partial.clear();
            self.usage = AppUsage::default();
        }
        if len == self.offset {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::with_capacity((len - self.offset) as usize);
        file.take(len - self.offset).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let Some(last_newline) = self.partial.iter().rposition(|b| *b == b'\n') else { return Ok(()) };
        let rest = self.partial.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        for line in complete.split(|b| *b == b'\n') {
            if let Ok(line) = std::str::from_utf8(line)
                && !line.trim().is_empty() {
                    self.usage.apply_line(line);
                }
        }
        // A finished file may lack the final newline: its last line is complete JSON.
        let finished = !path.to_string_lossy().ends_with(".inprogress");
        if finished && !self.partial.is_empty() {
            let applied = std::str::from_utf8(&self.partial).is_ok_and(|l| self.usage.apply_line(l));
            if applied {
                self.partial.clear();
            }
        }
        Ok(())
    }
}

/// Decodes a zstd file as far as it is complete (a frame being written stops the read early).
fn decode(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    if name.ends_with(".zstd") || name.ends_with(".zst") || name.contains(".zstd.") {
        let mut decoder = zstd::stream::read::Decoder::new(file)?;
        // Bytes decoded before an error (a truncated frame) are kept in `out`.
        if let Err(e) = decoder.read_to_end(&mut out) {
            tracing::debug!(path = %path.display(), error = %e, "event log part ends early (still written?)");
        }
    } else {
        let mut file = file;
        file.read_to_end(&mut out)?;
    }
    Ok(out)
}

/// Labels of an application's samples: namespace (from `spark.kubernetes.namespace`) → team.
fn extra_labels(usage: &AppUsage, labeler: &TeamLabeler) -> Labels {
    match &usage.namespace {
        Some(ns) => labeler.label(&Labels::from_pairs([("namespace", ns.as_str())])),
        None => Labels::default(),
    }
}

/// Polls the event logs every `config.poll_interval_ms` and ships usage samples. Runs forever.
pub async fn run_event_logs(
    config: SparkEventLogsConfig,
    buffer: crate::buffer::Buffer,
    resource: Labels,
    labeler: TeamLabeler,
) -> anyhow::Result<()> {
    let mut reader = EventLogReader::new(config.dirs.clone());
    let mut ticker = tokio::time::interval(Duration::from_millis(config.poll_interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let (back, apps) = tokio::task::spawn_blocking(move || {
            let apps = reader.poll();
            (reader, apps)
        })
        .await?;
        reader = back;
        let now = now_ms();
        let samples: Vec<Sample> =
            apps.iter().flat_map(|app| app.to_samples(&extra_labels(app, &labeler), now)).collect();
        for chunk in samples.chunks(MAX_SAMPLES_PER_PAYLOAD) {
            buffer.append(Signal::Metrics, encode_metrics(&resource, chunk), chunk.len() as u64).await;
        }
        if !apps.is_empty() {
            tracing::debug!(applications = apps.len(), samples = samples.len(), "shipped Spark usage");
        }
    }
}

/// For tests and tools: the usage in one event log, whatever its layout.
pub fn usage_of(path: &Path) -> std::io::Result<AppUsage> {
    let layout = if path.is_dir() {
        Layout::Decoded(rolling_parts(path))
    } else if path.to_string_lossy().contains(".zst") {
        Layout::Decoded(vec![path.to_path_buf()])
    } else {
        Layout::Lines
    };
    let mut source =
        Source { layout, stamp: Vec::new(), usage: AppUsage::default(), offset: 0, partial: Vec::new(), shipped: None };
    source.read(path)?;
    Ok(source.usage)
}


#[cfg(test)]
#[path = "eventlog_tests.rs"]
mod tests;
