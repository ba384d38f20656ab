//! Metric metadata (HELP/TYPE/UNIT per family) as ingest brings it, kept in memory and in
//! `metadata.json`.
//!
//! For each family name the distinct metadata seen is kept, newest first (at most
//! [`MAX_PER_FAMILY`]; several targets may expose one family differently, as Prometheus shows on
//! `/api/v1/metadata`). Metadata changes rarely, so the whole map is written again, atomically
//! (temp file, fsync, rename, fsync of the directory), whenever something new arrives, and
//! before the ingest that brought it is acknowledged. Ingest that brings nothing new writes
//! nothing. A write that failed is retried with the next ingest and before every flush publishes
//! offsets, so published Kafka offsets never cover metadata that is not on disk.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use pharos_model::MetricMetadata;
use serde::{Deserialize, Serialize};

use crate::metastore::sync_dir;
use crate::{Error, Result};

/// File name under the data directory.
pub const METADATA_FILE: &str = "metadata.json";
/// Current format version of [`METADATA_FILE`].
pub const METADATA_FORMAT_VERSION: u32 = 1;
/// Most distinct metadata kept per family name; the oldest is dropped beyond.
pub const MAX_PER_FAMILY: usize = 16;

#[derive(Serialize, Deserialize)]
struct OnDisk {
    format_version: u32,
    /// Every family's entries, newest first within a family.
    metadata: Vec<MetricMetadata>,
}

#[derive(Default)]
struct Inner {
    families: BTreeMap<String, Vec<MetricMetadata>>,
    /// Changed since the last successful write.
    dirty: bool,
}

/// See the module docs.
pub struct MetadataStore {
    dir: PathBuf,
    inner: Mutex<Inner>,
    writes: std::sync::atomic::AtomicU64,
}

impl MetadataStore {
    /// Loads `metadata.json` from `data_dir` (empty when there is none).
    pub fn open(data_dir: &Path) -> Result<MetadataStore> {
        let path = data_dir.join(METADATA_FILE);
        let mut families: BTreeMap<String, Vec<MetricMetadata>> = BTreeMap::new();
        match fs::read(&path) {
            Ok(bytes) => {
                let d: OnDisk =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
                if d.format_version != METADATA_FORMAT_VERSION {
                    return Err(Error::Corrupt(format!(
                        "{}: format version {} is not supported (expected {METADATA_FORMAT_VERSION})",
                        path.display(),
                        d.format_version
                    )));
                }
                for m in d.metadata {
                    families.entry(m.metric_family_name.clone()).or_default().push(m);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        Ok(MetadataStore {
            dir: data_dir.to_path_buf(),
            inner: Mutex::new(Inner { families, dirty: false }),
            writes: Default::default(),
        })
    }

    /// Adds what is new in `metadata` and, when anything is (or an earlier write failed), writes
    /// the file before returning. Returns whether anything was new. Known metadata costs lookups
    /// only: no allocation, no write.
    pub fn observe(&self, metadata: &[MetricMetadata]) -> Result<bool> {
        if metadata.is_empty() {
            return self.persist_if_dirty().map(|_| false);
        }
        let mut inner = self.inner.lock();
        let mut changed = false;
        for m in metadata {
            let known = inner
                .families
                .get(&m.metric_family_name)
                .is_some_and(|list| list.iter().any(|e| e.same_content(m)));
            if known {
                continue;
            }
            let list = inner.families.entry(m.metric_family_name.clone()).or_default();
            list.insert(0, m.clone());
            list.truncate(MAX_PER_FAMILY);
            changed = true;
        }
        inner.dirty |= changed;
        if inner.dirty {
            self.write(&mut inner)?;
        }
        Ok(changed)
    }

    /// Writes the file if a change has not been written yet.
    pub fn persist_if_dirty(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        if inner.dirty { self.write(&mut inner) } else { Ok(()) }
    }

    /// How many times the file was written since this store was opened.
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The metadata per family name (only `metric`'s when given), newest first per family.
    pub fn get(&self, metric: Option<&str>) -> BTreeMap<String, Vec<MetricMetadata>> {
        let inner = self.inner.lock();
        match metric {
            Some(name) => inner.families.get_key_value(name).map(|(k, v)| (k.clone(), v.clone())).into_iter().collect(),
            None => inner.families.clone(),
        }
    }

    fn write(&self, inner: &mut Inner) -> Result<()> {
        let doc = OnDisk {
            format_version: METADATA_FORMAT_VERSION,
            metadata: inner.families.values().flatten().cloned().collect(),
        };
        let bytes = serde_json::to_vec(&doc).map_err(|e| Error::Internal(e.to_string()))?;
        let tmp = self.dir.join(format!("{METADATA_FILE}.tmp"));
        let path = self.dir.join(METADATA_FILE);
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(&self.dir)?;
        inner.dirty = false;
        self.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use pharos_model::MetricType;

    use super::*;

    #[test]
    fn distinct_entries_newest_first_written_only_on_change_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        let cpu = MetricMetadata::new("node_cpu_seconds_total", MetricType::Counter, "Seconds.", "");
        let cpu2 = MetricMetadata::new("node_cpu_seconds_total", MetricType::Counter, "Seconds spent.", "");
        let mem = MetricMetadata::new("node_memory_bytes", MetricType::Gauge, "Memory.", "bytes");
        assert!(store.observe(&[cpu.clone(), mem.clone(), cpu.clone()]).unwrap());
        assert_eq!(store.writes(), 1);
        assert!(!store.observe(&[mem.clone(), cpu.clone()]).unwrap(), "nothing new");
        assert!(!store.observe(&[]).unwrap());
        assert_eq!(store.writes(), 1, "no write without a change");
        assert!(store.observe(std::slice::from_ref(&cpu2)).unwrap());
        assert_eq!(store.writes(), 2);
        let want = BTreeMap::from([
            ("node_cpu_seconds_total".to_string(), vec![cpu2.clone(), cpu.clone()]),
            ("node_memory_bytes".to_string(), vec![mem.clone()]),
        ]);
        assert_eq!(store.get(None), want);
        assert_eq!(store.get(Some("node_memory_bytes")), BTreeMap::from([("node_memory_bytes".to_string(), vec![mem])]));
        assert!(store.get(Some("nope")).is_empty());
        drop(store);
        let reopened = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(reopened.get(None), want);
        assert_eq!(reopened.writes(), 0);
    }

    #[test]
    fn entries_per_family_are_bounded_and_a_bad_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        let many: Vec<_> =
            (0..MAX_PER_FAMILY + 3).map(|i| MetricMetadata::new("f", MetricType::Gauge, format!("v{i}"), "")).collect();
        store.observe(&many).unwrap();
        let kept = &store.get(Some("f"))["f"];
        assert_eq!(kept.len(), MAX_PER_FAMILY);
        assert_eq!(kept[0].help, format!("v{}", MAX_PER_FAMILY + 2), "newest first");
        fs::write(dir.path().join(METADATA_FILE), b"{not json").unwrap();
        assert!(matches!(MetadataStore::open(dir.path()), Err(Error::Corrupt(_))));
    }
}
