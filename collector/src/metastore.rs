//! The metastore: which files are published, and which source offsets they cover.
//!
//! One JSON manifest (`manifest.json`, with a format version) lists every published Parquet
//! file and log split and, per source (`kafka:<topic>:<partition>` or `wal`), the highest offset
//! whose data is inside those files. Publishing writes the whole new manifest to a temporary file,
//! fsyncs it and renames it over the old one: files and offsets change together in one atomic
//! step (ARCHITECTURE.md decision 2). Files on disk that the manifest does not name were written
//! by a flush that crashed before publishing; [`Manifest::remove_unpublished`] deletes them.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Current manifest format version.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
const MANIFEST_FILE: &str = "manifest.json";

/// A published Parquet file of samples.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MetricFile {
    /// Path relative to the data directory.
    pub path: String,
    /// Smallest sample timestamp in the file (ms).
    pub min_ts_ms: i64,
    /// Largest sample timestamp in the file (ms).
    pub max_ts_ms: i64,
    /// Number of distinct series.
    pub series: u64,
    /// Number of samples.
    pub samples: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// zstd level of the file's pages: flushes write fast ([`crate::parquet_files::FLUSH_ZSTD_LEVEL`]),
    /// compaction rewrites small ([`crate::parquet_files::COMPACT_ZSTD_LEVEL`]). Files listed
    /// by manifests from before this field were written at level 9.
    #[serde(default = "compact_level")]
    pub zstd_level: i32,
    /// When the file was written (ms since the epoch): compaction leaves a partition that got a
    /// file recently to cheap merges and rewrites it small once it has settled. Manifests from
    /// before this field read 0 (long settled).
    #[serde(default)]
    pub created_ms: i64,
}

/// The level every file was written at before manifests recorded it.
fn compact_level() -> i32 {
    9
}

/// A published tantivy split of log records.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LogSplit {
    /// Directory relative to the data directory.
    pub path: String,
    /// Smallest record timestamp (ns).
    pub min_ts_ns: i64,
    /// Largest record timestamp (ns).
    pub max_ts_ns: i64,
    /// Number of records.
    pub records: u64,
}

/// The published state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Format version of this document.
    pub format_version: u32,
    /// Incremented at every publish.
    pub generation: u64,
    /// Published Parquet files.
    pub metric_files: Vec<MetricFile>,
    /// Published log splits.
    pub log_splits: Vec<LogSplit>,
    /// Native histogram files (`histograms/…`, see [`crate::histogram_files`]); absent from
    /// manifests written before them.
    #[serde(default)]
    pub histogram_files: Vec<MetricFile>,
    /// Per source, the highest offset covered by the published files.
    pub offsets: BTreeMap<String, i64>,
}

impl Manifest {
    /// Loads the manifest from `data_dir`, or an empty one when there is none yet.
    pub fn load(data_dir: &Path) -> Result<Manifest> {
        let path = data_dir.join(MANIFEST_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Corrupt(format!("{}: {e}", path.display()))
                })?;
                if m.format_version != MANIFEST_FORMAT_VERSION {
                    return Err(Error::Corrupt(format!(
                        "{}: format version {} is not supported (expected {})",
                        path.display(),
                        m.format_version,
                        MANIFEST_FORMAT_VERSION
                    )));
                }
                Ok(m)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Manifest { format_version: MANIFEST_FORMAT_VERSION, ..Default::default() })
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// The published offset of `source`, if any.
    pub fn offset(&self, source: &str) -> Option<i64> {
        self.offsets.get(source).copied()
    }

    /// A new manifest with `files` and `splits` added and `offsets` raised.
    pub fn with_published(
        &self,
        files: Vec<MetricFile>,
        splits: Vec<LogSplit>,
        offsets: &BTreeMap<String, i64>,
    ) -> Manifest {
        let mut next = self.clone();
        next.generation += 1;
        next.metric_files.extend(files);
        next.log_splits.extend(splits);
        for (source, offset) in offsets {
            let e = next.offsets.entry(source.clone()).or_insert(*offset);
            *e = (*e).max(*offset);
        }
        next
    }

    /// Writes this manifest atomically (temp file, fsync, rename, fsync of the directory).
    pub fn publish(&self, data_dir: &Path) -> Result<()> {
        let tmp = data_dir.join(format!("{MANIFEST_FILE}.tmp"));
        let path = data_dir.join(MANIFEST_FILE);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(data_dir)
    }

    /// Deletes Parquet files and split directories under `data_dir` that this manifest does not
    /// name (left by a flush that crashed before publishing). Returns how many were removed.
    pub fn remove_unpublished(&self, data_dir: &Path) -> Result<usize> {
        let published: HashSet<PathBuf> = self
            .metric_files
            .iter()
            .map(|f| data_dir.join(&f.path))
            .chain(self.log_splits.iter().map(|s| data_dir.join(&s.path)))
            .chain(self.histogram_files.iter().map(|f| data_dir.join(&f.path)))
            .collect();
        let mut removed = 0;
        let mut stack = vec![data_dir.join("metrics"), data_dir.join(crate::histogram_files::DIR)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if !published.contains(&p) {
                    fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                    removed += 1;
                }
            }
        }
        if let Ok(entries) = fs::read_dir(data_dir.join("logs")) {
            for entry in entries.flatten() {
                let p = entry.path();
                if !published.contains(&p) {
                    fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// fsyncs a directory so a rename or a new file in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_is_atomic_and_offsets_only_grow() {
        let dir = tempfile::tempdir().unwrap();
        let empty = Manifest::load(dir.path()).unwrap();
        assert_eq!(empty.generation, 0);
        let mut offsets = BTreeMap::new();
        offsets.insert("kafka:t:0".to_string(), 41);
        let file = MetricFile { path: "metrics/a.parquet".into(), min_ts_ms: 1, max_ts_ms: 2, series: 1, samples: 2, bytes: 10, zstd_level: 9, created_ms: 0 };
        let m1 = empty.with_published(vec![file.clone()], vec![], &offsets);
        m1.publish(dir.path()).unwrap();
        offsets.insert("kafka:t:0".to_string(), 7);
        let m2 = Manifest::load(dir.path()).unwrap().with_published(vec![], vec![], &offsets);
        assert_eq!(m2.offset("kafka:t:0"), Some(41), "a lower offset never moves a source back");
        assert_eq!(Manifest::load(dir.path()).unwrap(), m1);
        assert!(!dir.path().join("manifest.json.tmp").exists());
    }

    #[test]
    fn unpublished_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("metrics/date=2026-01-01/hour=00")).unwrap();
        fs::write(dir.path().join("metrics/date=2026-01-01/hour=00/kept.parquet"), b"x").unwrap();
        fs::write(dir.path().join("metrics/date=2026-01-01/hour=00/orphan.parquet"), b"x").unwrap();
        fs::create_dir_all(dir.path().join("logs/orphan-split")).unwrap();
        let m = Manifest { format_version: 1, ..Default::default() }.with_published(
            vec![MetricFile { path: "metrics/date=2026-01-01/hour=00/kept.parquet".into(), min_ts_ms: 0, max_ts_ms: 0, series: 0, samples: 0, bytes: 1, zstd_level: 9, created_ms: 0 }],
            vec![],
            &BTreeMap::new(),
        );
        assert_eq!(m.remove_unpublished(dir.path()).unwrap(), 2);
        assert!(dir.path().join("metrics/date=2026-01-01/hour=00/kept.parquet").exists());
        assert!(!dir.path().join("logs/orphan-split").exists());
    }
}
