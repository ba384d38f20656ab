//! Background maintenance of published data: compaction of small Parquet files and retention.
//!
//! Both change the manifest the same way a flush does — one atomic publish — and never change
//! offsets. Files that leave the manifest are deleted after [`DELETE_GRACE`], so a query that
//! took its snapshot just before can still read them; files a crash left behind are removed at
//! the next start by `Manifest::remove_unpublished`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metastore::{LogSplit, MetricFile};
use crate::{log_splits, parquet_files};
use crate::store::Store;
use crate::{Error, Result};

/// How long an unpublished file stays on disk for queries already running.
pub const DELETE_GRACE: Duration = Duration::from_secs(120);

/// What one maintenance pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Parquet files merged away.
    pub files_compacted: usize,
    /// Parquet files written by compaction.
    pub files_written: usize,
    /// Metric files dropped by retention.
    pub metric_files_expired: usize,
    /// Log splits dropped by retention.
    pub log_splits_expired: usize,
    /// Log splits merged away.
    pub log_splits_compacted: usize,
    /// Log splits written by merging.
    pub log_splits_written: usize,
}

const HOUR_NS: i64 = 3_600_000_000_000;

/// Default of how long an hour partition must go without a new file before compaction takes it
/// as complete and rewrites it into one small file (late samples still make new files, which a
/// later pass rewrites again).
pub const SETTLE: Duration = Duration::from_secs(600);

fn partition_of(path: &str) -> &str {
    path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("")
}

/// Whether a manifest path is a native histogram file's.
fn is_histogram_file(path: &str) -> bool {
    path.starts_with(crate::histogram_files::DIR) && path[crate::histogram_files::DIR.len()..].starts_with('/')
}

/// When a log split was written: the Unix milliseconds of its UUIDv7 directory name.
fn split_created_ms(s: &LogSplit) -> Option<i64> {
    let name = s.path.rsplit('/').next()?;
    let (secs, nanos) = uuid::Uuid::parse_str(name).ok()?.get_timestamp()?.to_unix();
    Some((secs as i64).saturating_mul(1000) + i64::from(nanos / 1_000_000))
}

/// The size class of a file of `samples` samples: files within a factor `base` of each other
/// share a tier, so a merge of `base` files of one tier yields about one file of the next.
fn tier(samples: u64, base: u64) -> u32 {
    let (mut s, mut t) = (samples, 0);
    while s >= base {
        s /= base;
        t += 1;
    }
    t
}

impl Store {
    /// [`Store::compact_at`] now, with the default [`SETTLE`].
    pub fn compact(&self, min_files: usize) -> Result<MaintenanceReport> {
        self.compact_at(min_files, SETTLE, chrono::Utc::now().timestamp_millis())
    }

    /// Compacts the Parquet files of every hour partition, and publishes the result:
    ///
    /// - a partition that got no new file for `settle` (its hour is over, or backfilling
    ///   stopped) is rewritten into one file at [`parquet_files::COMPACT_ZSTD_LEVEL`] once, when
    ///   it has two files or more or a file written fast by a flush;
    /// - in a partition still receiving files, files of the same size tier (within a factor
    ///   `min_files`) are merged at the fast [`parquet_files::FLUSH_ZSTD_LEVEL`] once there are
    ///   `min_files` of them. Merging by tier rewrites each sample a few times instead of
    ///   rewriting the partition's largest file at every pass, and the expensive level is paid
    ///   once per partition.
    ///
    /// Files are read and written without the flush lock, so flushes (and the head's memory)
    /// do not wait for a long compaction.
    pub fn compact_at(&self, min_files: usize, settle: Duration, now_ms: i64) -> Result<MaintenanceReport> {
        let manifest = self.manifest();
        let mut by_partition: BTreeMap<&str, Vec<&MetricFile>> = BTreeMap::new();
        for f in &manifest.metric_files {
            by_partition.entry(partition_of(&f.path)).or_default().push(f);
        }
        let min_files = min_files.max(2);
        let mut merges: Vec<(&str, Vec<&MetricFile>, i32)> = Vec::new();
        for (partition, files) in by_partition {
            let newest = files.iter().map(|f| f.created_ms).max().unwrap_or(0);
            if newest.saturating_add(settle.as_millis() as i64) <= now_ms {
                if files.len() >= 2 || files.iter().any(|f| f.zstd_level != parquet_files::COMPACT_ZSTD_LEVEL) {
                    merges.push((partition, files, parquet_files::COMPACT_ZSTD_LEVEL));
                }
                continue;
            }
            let mut tiers: BTreeMap<u32, Vec<&MetricFile>> = BTreeMap::new();
            for f in files {
                tiers.entry(tier(f.samples, min_files as u64)).or_default().push(f);
            }
            merges.extend(tiers.into_values().filter(|t| t.len() >= min_files).map(|t| (partition, t, parquet_files::FLUSH_ZSTD_LEVEL)));
        }
        let mut removed: Vec<MetricFile> = Vec::new();
        let mut written: Vec<MetricFile> = Vec::new();
        self.compact_histogram_files(&manifest, min_files, settle, now_ms, &mut removed, &mut written)?;
        for (partition, files, level) in merges {
            let catalogs: Vec<(std::path::PathBuf, Arc<parquet_files::FileSeries>)> = files
                .iter()
                .map(|f| Ok((self.data_dir.join(&f.path), self.file_series(&f.path)?)))
                .collect::<Result<_>>()?;
            let inputs: Vec<(&Path, &parquet_files::FileSeries)> = catalogs.iter().map(|(p, c)| (p.as_path(), c.as_ref())).collect();
            let dir = partition.strip_prefix("metrics/").unwrap_or(partition);
            let out = parquet_files::merge_files(&self.data_dir, dir, &inputs, level)?;
            let (before, after): (u64, u64) = (files.iter().map(|f| f.samples).sum(), out.iter().map(|f| f.0.samples).sum());
            if before != after {
                return Err(Error::Internal(format!("compaction read {before} samples but wrote {after}")));
            }
            removed.extend(files.iter().map(|f| (*f).clone()));
            if let Some((file, catalog)) = out {
                // Cached before it is published: queries and later merges never read it back.
                self.file_series.lock().insert(file.path.clone(), Arc::new(catalog));
                written.push(file);
            }
        }
        if removed.is_empty() {
            return Ok(MaintenanceReport::default());
        }
        let report = MaintenanceReport { files_compacted: removed.len(), files_written: written.len(), ..Default::default() };
        self.replace_files(&removed, written, &[], Vec::new())?;
        Ok(report)
    }

    /// Native histogram files of a partition: merged into one at the compaction level once the
    /// partition has settled, as float files are; while it still receives files, all of them
    /// at the flush level once there are `min_files` squared (few series are histograms, so their
    /// files are small and size tiers buy little).
    fn compact_histogram_files(
        &self,
        manifest: &crate::metastore::Manifest,
        min_files: usize,
        settle: Duration,
        now_ms: i64,
        removed: &mut Vec<MetricFile>,
        written: &mut Vec<MetricFile>,
    ) -> Result<()> {
        let mut by_partition: BTreeMap<&str, Vec<&MetricFile>> = BTreeMap::new();
        for f in &manifest.histogram_files {
            by_partition.entry(partition_of(&f.path)).or_default().push(f);
        }
        for (partition, mut files) in by_partition {
            let newest = files.iter().map(|f| f.created_ms).max().unwrap_or(0);
            let level = if newest.saturating_add(settle.as_millis() as i64) <= now_ms {
                if files.len() < 2 && files.iter().all(|f| f.zstd_level == parquet_files::COMPACT_ZSTD_LEVEL) {
                    continue;
                }
                parquet_files::COMPACT_ZSTD_LEVEL
            } else if files.len() >= min_files * min_files {
                parquet_files::FLUSH_ZSTD_LEVEL
            } else {
                continue;
            };
            // Oldest first: of equal timestamps the newer file's sample wins.
            files.sort_by_key(|f| f.created_ms);
            let dir = partition.strip_prefix(&format!("{}/", crate::histogram_files::DIR)).unwrap_or(partition);
            let out = crate::histogram_files::merge(&self.data_dir, dir, &files, level)?;
            removed.extend(files.iter().map(|f| (*f).clone()));
            written.extend(out);
        }
        Ok(())
    }

    /// Merges log splits of one hour (by `min_ts_ns`), as Parquet files are merged: while the
    /// hour still gets new splits, `min_files` splits of one size tier (record counts within a
    /// factor `min_files` of each other), so that a record is rewritten a few times, not once
    /// per flush; once no split of the hour was written for `settle` (the split's UUIDv7
    /// name tells when), all of them. A merge reads its inputs' records into memory, so the
    /// chosen splits are merged in time order in groups of at most `max_records` records (a
    /// split that is larger on its own is left as it is). The result is published in one
    /// manifest step. Offsets are not touched; the record counts before and after must agree.
    pub fn compact_log_splits(&self, min_files: usize, max_records: u64, settle: Duration, now_ms: i64) -> Result<MaintenanceReport> {
        let manifest = self.manifest();
        let mut by_hour: BTreeMap<i64, Vec<&LogSplit>> = BTreeMap::new();
        for s in &manifest.log_splits {
            by_hour.entry(s.min_ts_ns.div_euclid(HOUR_NS)).or_default().push(s);
        }
        let min_files = min_files.max(2);
        let mut chosen: Vec<Vec<&LogSplit>> = Vec::new();
        for splits in by_hour.into_values() {
            let newest = splits.iter().map(|s| split_created_ms(s).unwrap_or(now_ms)).max().unwrap_or(now_ms);
            if newest.saturating_add(settle.as_millis() as i64) <= now_ms {
                chosen.push(splits);
                continue;
            }
            let mut by_tier: BTreeMap<u32, Vec<&LogSplit>> = BTreeMap::new();
            for s in splits {
                by_tier.entry(tier(s.records, min_files as u64)).or_default().push(s);
            }
            chosen.extend(by_tier.into_values().filter(|ss| ss.len() >= min_files));
        }
        let mut groups: Vec<Vec<&LogSplit>> = Vec::new();
        for mut splits in chosen {
            splits.sort_by_key(|s| (s.min_ts_ns, s.max_ts_ns));
            let mut group: Vec<&LogSplit> = Vec::new();
            let mut total = 0u64;
            for s in splits {
                if !group.is_empty() && total.saturating_add(s.records) > max_records {
                    groups.push(std::mem::take(&mut group));
                    total = 0;
                }
                total = total.saturating_add(s.records);
                group.push(s);
            }
            groups.push(group);
        }
        let mut removed: Vec<LogSplit> = Vec::new();
        let mut written: Vec<LogSplit> = Vec::new();
        for splits in groups.iter().filter(|g| g.len() >= 2) {
            let mut records = Vec::new();
            for s in splits {
                let split = log_splits::open_split(&self.data_dir.join(&s.path))?;
                let all = pharos_model::LogSearch::new(&[], i64::MIN, i64::MAX);
                let mut stats = log_splits::search::SearchStats::default();
                log_splits::search::search_split(&split, (s.min_ts_ns, s.max_ts_ns), &all, None, &mut records, &mut stats)?;
            }
            let before: u64 = splits.iter().map(|s| s.records).sum();
            if before != records.len() as u64 {
                return Err(Error::Internal(format!(
                    "log split merge: manifest says {before} records but {} were read",
                    records.len()
                )));
            }
            records.sort_by_key(|r| r.timestamp_ns);
            let Some(out) = log_splits::write_split(&self.data_dir, &self.log_fields, &records)? else { continue };
            if out.records != before {
                return Err(Error::Internal(format!("log split merge read {before} records but wrote {}", out.records)));
            }
            removed.extend(splits.iter().map(|s| (*s).clone()));
            written.push(out);
        }
        if removed.is_empty() {
            return Ok(MaintenanceReport::default());
        }
        let report = MaintenanceReport {
            log_splits_compacted: removed.len(),
            log_splits_written: written.len(),
            ..Default::default()
        };
        self.replace_files(&[], Vec::new(), &removed, written)?;
        Ok(report)
    }

    /// Drops metric files and log splits whose newest data is older than `retention`.
    pub fn apply_retention(&self, retention: Duration, now_ms: i64) -> Result<MaintenanceReport> {
        let manifest = self.manifest();
        let cutoff_ms = now_ms - retention.as_millis() as i64;
        let old_files: Vec<MetricFile> =
            manifest.metric_files.iter().chain(&manifest.histogram_files).filter(|f| f.max_ts_ms < cutoff_ms).cloned().collect();
        let old_splits: Vec<LogSplit> =
            manifest.log_splits.iter().filter(|s| s.max_ts_ns / 1_000_000 < cutoff_ms).cloned().collect();
        if old_files.is_empty() && old_splits.is_empty() {
            return Ok(MaintenanceReport::default());
        }
        let report = MaintenanceReport {
            metric_files_expired: old_files.len(),
            log_splits_expired: old_splits.len(),
            ..Default::default()
        };
        self.replace_files(&old_files, Vec::new(), &old_splits, Vec::new())?;
        Ok(report)
    }

    /// Publishes the current manifest minus `removed`/`removed_splits` plus `added`/`added_splits`,
    /// then schedules the removed files for deletion. Takes the flush lock, so it publishes after
    /// (or before) a flush, never in the middle of one. Only maintenance removes files, one pass
    /// at a time; a removed file that is no longer published means that rule was broken, and
    /// nothing is published.
    fn replace_files(
        &self,
        removed: &[MetricFile],
        added: Vec<MetricFile>,
        removed_splits: &[LogSplit],
        added_splits: Vec<LogSplit>,
    ) -> Result<()> {
        let _guard = self.flush_lock.lock();
        let manifest = self.manifest();
        let gone = removed.iter().map(|r| &r.path).chain(removed_splits.iter().map(|r| &r.path)).find(|p| {
            !manifest.metric_files.iter().chain(&manifest.histogram_files).any(|f| &f.path == *p)
                && !manifest.log_splits.iter().any(|s| &s.path == *p)
        });
        if let Some(path) = gone {
            return Err(Error::Internal(format!("{path} was unpublished while maintenance read it")));
        }
        let mut next = (*manifest).clone();
        next.generation += 1;
        next.metric_files.retain(|f| !removed.iter().any(|r| r.path == f.path));
        next.histogram_files.retain(|f| !removed.iter().any(|r| r.path == f.path));
        // Histogram files live under their own directory and list.
        for f in added {
            if is_histogram_file(&f.path) { next.histogram_files.push(f) } else { next.metric_files.push(f) }
        }
        next.log_splits.retain(|s| !removed_splits.iter().any(|r| r.path == s.path));
        next.log_splits.extend(added_splits);
        next.publish(&self.data_dir)?;
        self.state.write().manifest = Arc::new(next);
        let mut pending = self.pending_deletes.lock();
        let now = Instant::now();
        pending.extend(removed.iter().map(|f| (now, self.data_dir.join(&f.path))));
        pending.extend(removed_splits.iter().map(|s| (now, self.data_dir.join(&s.path))));
        let mut catalogs = self.file_series.lock();
        for f in removed {
            catalogs.remove(&f.path);
        }
        drop(catalogs);
        let mut readers = self.split_readers.lock();
        for s in removed_splits {
            readers.remove(&s.path);
        }
        Ok(())
    }

    /// Deletes files unpublished more than `grace` ago.
    pub fn delete_unpublished(&self, grace: Duration) {
        // A query that read a file just as it was unpublished may have cached its series list.
        let manifest = self.manifest();
        self.file_series.lock().retain(|path, _| manifest.metric_files.iter().any(|f| &f.path == path));
        self.histogram_file_series.lock().retain(|path, _| manifest.histogram_files.iter().any(|f| &f.path == path));
        self.label_cache.prune();
        let mut pending = self.pending_deletes.lock();
        pending.retain(|(at, path)| {
            if at.elapsed() < grace {
                return true;
            }
            remove_path(path);
            false
        });
    }
}

fn remove_path(path: &Path) {
    let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    if let Err(e) = result
        && e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not delete unpublished file");
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Batch;
    use crate::telemetry::CollectorMetrics;
    use pharos_model::{LabelMatcher, Labels, LogRecord, LogsReader, MetricsReader, Sample};

    fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn all(store: &Store) -> Vec<(i64, f64)> {
        let m = [LabelMatcher::new("__name__", "=", "m").unwrap()];
        store.select_series(&m, i64::MIN, i64::MAX).unwrap().into_iter().flat_map(|s| s.samples).collect()
    }

    #[test]
    fn compaction_keeps_every_sample_and_retention_drops_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        let labels = Labels::from_pairs([("__name__", "m")]);
        let hour = 3_600_000;
        // Four flushes into hour 0, one into hour 5.
        for i in 0..4 {
            store.ingest("kafka:t:0", i, Batch::Metrics(vec![Sample::new(labels.clone(), i * 1000, i as f64)]));
            store.flush().unwrap();
        }
        store.ingest("kafka:t:0", 4, Batch::Metrics(vec![Sample::new(labels.clone(), 5 * hour, 9.0)]));
        store.flush().unwrap();
        let before = all(&store);
        assert_eq!(store.manifest().metric_files.len(), 5);

        // While the files are new, hour 0's four one-sample files (one size tier) are merged
        // into one file written fast; hour 5's single file stays.
        let created = store.manifest().metric_files.iter().map(|f| f.created_ms).max().unwrap();
        let settle = SETTLE.as_millis() as i64;
        let r = store.compact_at(3, SETTLE, created).unwrap();
        assert_eq!((r.files_compacted, r.files_written), (4, 1), "only the partition with >= 3 files of a tier");
        assert_eq!(store.manifest().metric_files.len(), 2);
        let levels = |store: &Store| store.manifest().metric_files.iter().map(|f| (f.min_ts_ms / hour, f.zstd_level)).collect::<BTreeMap<_, _>>();
        let fast = parquet_files::FLUSH_ZSTD_LEVEL;
        assert_eq!(levels(&store), BTreeMap::from([(0, fast), (5, fast)]));
        // Until the newest file is `settle` old nothing more happens; then each partition's
        // fast file is rewritten small.
        let created: Vec<i64> = store.manifest().metric_files.iter().map(|f| f.created_ms).collect();
        let (first, created) = (*created.iter().min().unwrap(), *created.iter().max().unwrap());
        assert_eq!(store.compact_at(3, SETTLE, first + settle - 1).unwrap(), MaintenanceReport::default());
        let r = store.compact_at(3, SETTLE, created + settle).unwrap();
        assert_eq!((r.files_compacted, r.files_written), (2, 2));
        let small = parquet_files::COMPACT_ZSTD_LEVEL;
        assert_eq!(levels(&store), BTreeMap::from([(0, small), (5, small)]));
        assert_eq!(store.compact_at(3, SETTLE, created + 2 * settle).unwrap(), MaintenanceReport::default(), "nothing left to rewrite");
        assert_eq!(all(&store), before, "same samples, none duplicated");
        assert_eq!(store.published_offset("kafka:t:0"), Some(4), "offsets untouched");
        // Replaced files are deleted only after the grace period.
        store.delete_unpublished(Duration::from_secs(3600));
        let files_on_disk = |d: &Path| walk(d).len();
        assert_eq!(files_on_disk(&dir.path().join("metrics")), 8);
        store.delete_unpublished(Duration::ZERO);
        assert_eq!(files_on_disk(&dir.path().join("metrics")), 2);

        // Reopen: the compacted state is what was published.
        drop(store);
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        assert_eq!(all(&store), before);

        // Retention of 2 h at t = 6 h 30 min (cutoff 4 h 30 min) drops hour 0, keeps hour 5.
        let r = store.apply_retention(Duration::from_secs(7200), 6 * hour + hour / 2).unwrap();
        assert_eq!(r.metric_files_expired, 1);
        assert_eq!(all(&store), vec![(5 * hour, 9.0)]);
    }

    #[test]
    fn a_partition_receiving_files_merges_by_size_tier_and_settles_into_one_small_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        let labels = Labels::from_pairs([("__name__", "m")]);
        // One flush of 100 samples, then three of one sample, all in hour 0.
        let big: Vec<Sample> = (0..100).map(|i| Sample::new(labels.clone(), i * 10, i as f64)).collect();
        store.ingest("k", 0, Batch::Metrics(big));
        store.flush().unwrap();
        for i in 0..3 {
            store.ingest("k", 1 + i, Batch::Metrics(vec![Sample::new(labels.clone(), 2000 + i as i64, -1.0)]));
            store.flush().unwrap();
        }
        let before = all(&store);
        let newest = || store.manifest().metric_files.iter().map(|f| f.created_ms).max().unwrap();
        let sizes = |store: &Store| {
            let mut s: Vec<(u64, i32)> = store.manifest().metric_files.iter().map(|f| (f.samples, f.zstd_level)).collect();
            s.sort();
            s
        };
        let fast = parquet_files::FLUSH_ZSTD_LEVEL;
        // Tier of base 3: the three one-sample files merge; the 100-sample file is not rewritten.
        let r = store.compact_at(3, SETTLE, newest()).unwrap();
        assert_eq!((r.files_compacted, r.files_written), (3, 1));
        assert_eq!(sizes(&store), vec![(3, fast), (100, fast)]);
        assert_eq!(store.compact_at(3, SETTLE, newest()).unwrap(), MaintenanceReport::default(), "tiers 1 and 4 hold one file each");
        // Settled: one file, compressed small, same samples.
        let r = store.compact_at(3, SETTLE, newest() + SETTLE.as_millis() as i64).unwrap();
        assert_eq!((r.files_compacted, r.files_written), (2, 1));
        assert_eq!(sizes(&store), vec![(103, parquet_files::COMPACT_ZSTD_LEVEL)]);
        assert_eq!(all(&store), before);
    }

    #[test]
    fn size_tiers_grow_by_the_base() {
        assert_eq!([0, 1, 2, 3, 8, 9, 26, 27, 80, 81].map(|n| tier(n, 3)), [0, 0, 0, 1, 1, 2, 2, 3, 3, 4]);
        assert_eq!([1, 7, 8, 63, 64, 2_000_000].map(|n| tier(n, 8)), [0, 0, 1, 1, 2, 6]);
    }

    fn all_logs(store: &Store) -> Vec<LogRecord> {
        let mut out = store.select_logs(&[], &[], i64::MIN, i64::MAX).unwrap();
        out.sort_by(|a, b| (a.timestamp_ns, &a.body).cmp(&(b.timestamp_ns, &b.body)));
        out
    }

    #[test]
    fn log_split_merges_go_by_size_tier_then_settle_with_at_most_max_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        let rec = |ts: i64| LogRecord {
            labels: Labels::from_pairs([("app", "a")]),
            timestamp_ns: ts,
            body: format!("line {ts}"),
            severity: String::new(),
            attributes: Vec::new(),
        };
        // Five flushes into one hour: 100, 100, 100, 300 and 100 records.
        let mut ts = 0;
        for (offset, n) in [100, 100, 100, 300, 100].into_iter().enumerate() {
            store.ingest("kafka:l:0", offset as i64, Batch::Logs((0..n).map(|_| { ts += 1; rec(ts) }).collect()));
            store.flush().unwrap();
        }
        let before = all_logs(&store);
        assert_eq!(before.len(), 700);
        let sizes = |store: &Store| {
            let mut s: Vec<(i64, u64)> = store.manifest().log_splits.iter().map(|s| (s.min_ts_ns, s.records)).collect();
            s.sort();
            s.into_iter().map(|(_, n)| n).collect::<Vec<_>>()
        };
        let now = now_ms();
        // While the hour gets splits: the four of tier 4 (81..243 records, base 3) in time
        // order, at most 250 per merge: [100, 100] and [100, 100]; the 300 (tier 5) stays.
        let r = store.compact_log_splits(3, 250, SETTLE, now).unwrap();
        assert_eq!((r.log_splits_compacted, r.log_splits_written), (4, 2));
        assert_eq!(sizes(&store), vec![200, 200, 300]);
        assert_eq!(all_logs(&store), before, "every record exactly once");
        // Settled within its tiers: two of tier 4 are fewer than 3.
        assert_eq!(store.compact_log_splits(3, 250, SETTLE, now).unwrap(), MaintenanceReport::default());
        // Once no split was written for `settle`, all of the hour's, still at most 250 each:
        // none fits with a neighbour, so nothing; with room for 700, one split.
        let later = now + SETTLE.as_millis() as i64 + 1000;
        assert_eq!(store.compact_log_splits(3, 250, SETTLE, later).unwrap(), MaintenanceReport::default());
        let r = store.compact_log_splits(3, 700, SETTLE, later).unwrap();
        assert_eq!((r.log_splits_compacted, r.log_splits_written), (3, 1));
        assert_eq!(sizes(&store), vec![700]);
        assert_eq!(all_logs(&store), before);
    }

    #[test]
    fn log_split_merge_keeps_every_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        let hour = HOUR_NS;
        let rec = |ts: i64, body: &str| LogRecord {
            labels: Labels::from_pairs([("app", "a"), ("service_name", "a")]),
            timestamp_ns: ts,
            body: body.into(),
            severity: "info".into(),
            attributes: Vec::new(),
        };
        // Four flushes into hour 0 (two records each), one into hour 3.
        for i in 0..4i64 {
            store.ingest("kafka:l:0", i, Batch::Logs(vec![rec(i * 10, &format!("a{i}")), rec(i * 10 + 1, &format!("b{i}"))]));
            store.flush().unwrap();
        }
        store.ingest("kafka:l:0", 4, Batch::Logs(vec![rec(3 * hour, "late")]));
        store.flush().unwrap();
        assert_eq!(store.manifest().log_splits.len(), 5);
        let before = all_logs(&store);
        assert_eq!(before.len(), 9);

        let r = store.compact_log_splits(3, u64::MAX, SETTLE, now_ms()).unwrap();
        assert_eq!((r.log_splits_compacted, r.log_splits_written), (4, 1));
        assert_eq!(store.manifest().log_splits.len(), 2);
        assert_eq!(all_logs(&store), before, "every record exactly once");
        assert_eq!(store.published_offset("kafka:l:0"), Some(4), "offsets untouched");
        assert_eq!(store.compact_log_splits(3, u64::MAX, SETTLE, now_ms()).unwrap(), MaintenanceReport::default());
        store.delete_unpublished(Duration::ZERO);
        assert_eq!(std::fs::read_dir(dir.path().join("logs")).unwrap().count(), 2);

        drop(store);
        let store = Store::open(dir.path(), Arc::new(CollectorMetrics::default())).unwrap();
        assert_eq!(all_logs(&store), before);
        assert_eq!(store.manifest().log_splits.len(), 2);

        // index/stats from the merged split's totals plus the head: eight 2-byte lines, "late"
        // and an unflushed "head!": 10 entries, 8 × 2 + 4 + 5 = 25 bytes, one stream.
        store.ingest("kafka:l:0", 5, Batch::Logs(vec![rec(3 * hour + 1, "head!")]));
        let stats = pharos_model::LogsReader::log_stream_stats(&store, &[], i64::MIN, i64::MAX).unwrap();
        assert_eq!(stats, vec![(Labels::from_pairs([("app", "a"), ("service_name", "a")]), pharos_model::StreamStats { entries: 10, bytes: 25 })]);
        // Hour 0 alone: the merged split exactly (its totals), nothing of hour 3 or the head.
        let stats = pharos_model::LogsReader::log_stream_stats(&store, &[], 0, hour - 1).unwrap();
        assert_eq!(stats[0].1, pharos_model::StreamStats { entries: 8, bytes: 16 });
    }

    fn walk(d: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
        }
        out
    }
}
