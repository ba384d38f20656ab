//! A remote_write `WriteRequest` parsed in place: label names and values stay in the decoded
//! buffer and are handed out as `&str`, so ingesting a request does not allocate per sample or
//! per label. The owned decoder ([`crate::remote_write::decode`]) builds a [`crate::Labels`] (a
//! dozen allocations) for every series of every request; the head only needs the strings of a
//! series it has not seen before.
//!
//! Wire format (prometheus/prompb `types.proto`, `remote.proto`): `WriteRequest { repeated
//! TimeSeries timeseries = 1; … }`, `TimeSeries { repeated Label labels = 1; repeated Sample
//! samples = 2; … }`, `Label { string name = 1; string value = 2; }`, `Sample { double value =
//! 1; int64 timestamp = 2; }`. Metadata (field 3 of `WriteRequest`), exemplars and native
//! histograms (fields 3 and 4 of `TimeSeries`, [`crate::histogram::parse_histogram`]) are read;
//! other fields are skipped.
//!
//! Each series' labels are put in the canonical order of [`crate::Labels::from_pairs`]: sorted
//! by name, a repeated name keeps its last value, empty values dropped — so a series ingested
//! through either decoder is the same series.

use std::ops::Range;
use std::sync::Mutex;

use crate::labels::METRIC_NAME;
use crate::{Error, Labels, MetricMetadata, Result, Sample};

/// A parsed `WriteRequest` that owns its uncompressed bytes.
pub struct WriteView {
    buf: Vec<u8>,
    /// Every series' labels, canonical order per series: byte ranges of name and value in `buf`.
    labels: Vec<(Range<u32>, Range<u32>)>,
    /// Per series: its range in `labels` and in `samples`.
    series: Vec<(Range<u32>, Range<u32>)>,
    /// Every series' samples, `(timestamp_ms, value)`, in request order.
    samples: Vec<(i64, f64)>,
    /// HELP/TYPE/UNIT of families (`WriteRequest.metadata`, field 3).
    metadata: Vec<MetricMetadata>,
    /// What the request held that is not stored (nothing since native histograms are).
    dropped: Dropped,
    /// Native histogram samples (`TimeSeries` field 4; 3 in 2.0): their series (index in
    /// `series`), timestamp and histogram, in request order.
    histograms: Vec<(u32, i64, std::sync::Arc<crate::FloatHistogram>)>,
    /// Every exemplar's label pairs: byte ranges in `buf`.
    exemplar_labels: Vec<(Range<u32>, Range<u32>)>,
    /// The exemplars (`TimeSeries` field 3; 4 in 2.0), in request order.
    exemplars: Vec<ExemplarRef>,
}

/// An exemplar of a [`WriteView`]: its series (index in `series`), its labels (range in
/// `exemplar_labels`), value and timestamp.
struct ExemplarRef {
    series: u32,
    labels: Range<u32>,
    value: f64,
    timestamp_ms: i64,
}

/// What a remote_write request held that Pharos does not store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Native histogram samples (none since Pharos stores them; kept for OTLP's count).
    pub histograms: u64,
}

/// One series of a [`WriteView`].
pub struct SeriesView<'a> {
    view: &'a WriteView,
    labels: &'a [(Range<u32>, Range<u32>)],
    /// The series' samples, `(timestamp_ms, value)`.
    pub samples: &'a [(i64, f64)],
}

impl<'a> SeriesView<'a> {
    /// `(name, value)` pairs in name order.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone + 'a {
        let view = self.view;
        self.labels.iter().map(move |(k, v)| (view.str(k), view.str(v)))
    }

    /// `(name, value)` pairs in name order, as bytes: what the head compares and hashes, so a
    /// series it already holds costs no second UTF-8 check (the request was checked when parsed).
    pub fn label_bytes(&self) -> impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + Clone + 'a {
        let buf = &self.view.buf;
        self.labels.iter().map(move |(k, v)| (&buf[k.start as usize..k.end as usize], &buf[v.start as usize..v.end as usize]))
    }

    /// The labels as an owned [`Labels`].
    pub fn to_labels(&self) -> Labels {
        Labels::from_pairs(self.labels())
    }
}

/// The vectors of dropped views, for the next request to parse into. Without them every request
/// allocates its decoded body and grows its label, series and sample vectors by doubling (about
/// 5 MB per request of the tsdb benchmark), then frees them; with the allocator returning
/// freed memory to the OS after 10 ms (`pharos`' main), each request also faulted all of that
/// memory in again.
static SPARE: Mutex<Vec<Buffers>> = Mutex::new(Vec::new());
/// Sets kept, beyond which dropped sets are freed: about the requests parsed at the same time.
const SPARE_SETS: usize = 4;
/// A set whose vectors hold more than this is freed rather than kept, so the spare sets pin at
/// most 64 MB (remote_write requests are usually far smaller: Prometheus sends at most 2,000
/// samples per request by default; the tsdb benchmark's 33,000-sample requests take ~5 MB).
const SPARE_MAX_BYTES: usize = 16 << 20;

#[derive(Default)]
struct Buffers {
    buf: Vec<u8>,
    labels: Vec<(Range<u32>, Range<u32>)>,
    series: Vec<(Range<u32>, Range<u32>)>,
    samples: Vec<(i64, f64)>,
}

impl Buffers {
    /// A kept set (emptied), or a new one.
    fn take() -> Buffers {
        SPARE.lock().ok().and_then(|mut spare| spare.pop()).unwrap_or_default()
    }

    /// A kept set holding the decompressed `snappy_body`.
    fn decompressed(snappy_body: &[u8]) -> Result<Buffers> {
        let not_snappy = |e: snap::Error| Error::Content(format!("remote_write body is not snappy-compressed: {e}"));
        let mut buffers = Buffers::take();
        let len = snap::raw::decompress_len(snappy_body).map_err(not_snappy)?;
        buffers.buf.resize(len, 0);
        let written = snap::raw::Decoder::new().decompress(snappy_body, &mut buffers.buf).map_err(not_snappy)?;
        buffers.buf.truncate(written);
        Ok(buffers)
    }

    fn bytes(&self) -> usize {
        self.buf.capacity()
            + self.labels.capacity() * size_of::<(Range<u32>, Range<u32>)>()
            + self.series.capacity() * size_of::<(Range<u32>, Range<u32>)>()
            + self.samples.capacity() * size_of::<(i64, f64)>()
    }

    fn give_back(mut self) {
        if self.bytes() == 0 || self.bytes() > SPARE_MAX_BYTES {
            return;
        }
        self.buf.clear();
        self.labels.clear();
        self.series.clear();
        self.samples.clear();
        if let Ok(mut spare) = SPARE.lock()
            && spare.len() < SPARE_SETS
        {
            spare.push(self);
        }
    }
}

impl Drop for WriteView {
    fn drop(&mut self) {
        Buffers {
            buf: std::mem::take(&mut self.buf),
            labels: std::mem::take(&mut self.labels),
            series: std::mem::take(&mut self.series),
            samples: std::mem::take(&mut self.samples),
        }
        .give_back();
    }
}

impl WriteView {
    /// Decompresses a snappy block-compressed 1.0 `WriteRequest` and parses it.
    pub fn decode_snappy(snappy_body: &[u8]) -> Result<WriteView> {
        WriteView::parse_into(Buffers::decompressed(snappy_body)?)
    }

    /// Decompresses a snappy block-compressed 2.0 `io.prometheus.write.v2.Request` and parses it.
    pub fn decode_snappy_v2(snappy_body: &[u8]) -> Result<WriteView> {
        WriteView::parse_v2_into(Buffers::decompressed(snappy_body)?)
    }

    /// Parses an uncompressed 2.0 `io.prometheus.write.v2.Request`.
    pub fn parse_v2(buf: Vec<u8>) -> Result<WriteView> {
        WriteView::parse_v2_into(Buffers { buf, ..Buffers::take() })
    }

    /// Parses an uncompressed `WriteRequest`.
    pub fn parse(buf: Vec<u8>) -> Result<WriteView> {
        WriteView::parse_into(Buffers { buf, ..Buffers::take() })
    }

    /// Parses `buffers.buf` into the (empty) other vectors of `buffers`.
    fn parse_into(buffers: Buffers) -> Result<WriteView> {
        let Buffers { buf, labels, series, samples } = buffers;
        let len = u32::try_from(buf.len()).map_err(|_| Error::Content("remote_write request larger than 4 GiB".into()))?;
        let mut v = WriteView { buf: Vec::new(), labels, series, samples, metadata: Vec::new(), dropped: Dropped::default(), histograms: Vec::new(), exemplar_labels: Vec::new(), exemplars: Vec::new() };
        let mut r = Reader { buf: &buf, pos: 0 };
        while r.pos < len as usize {
            let (field, wire) = r.key()?;
            if field == 1 && wire == LEN {
                let ts = r.len_delimited()?;
                v.parse_series(&buf, ts)?;
            } else if field == 3 && wire == LEN {
                let m = r.len_delimited()?;
                v.metadata.push(parse_metadata(&buf, m)?);
            } else {
                r.skip(wire)?;
            }
        }
        v.buf = buf;
        Ok(v)
    }

    /// Parses `buffers.buf` as a 2.0 `Request { reserved 1 to 3; repeated string symbols = 4;
    /// repeated TimeSeries timeseries = 5; }`: the symbols first (wherever they stand in the
    /// message), then the series, whose label refs become byte ranges of their symbols.
    fn parse_v2_into(buffers: Buffers) -> Result<WriteView> {
        let Buffers { buf, labels, series, samples } = buffers;
        u32::try_from(buf.len()).map_err(|_| Error::Content("remote_write request larger than 4 GiB".into()))?;
        let mut v = WriteView { buf: Vec::new(), labels, series, samples, metadata: Vec::new(), dropped: Dropped::default(), histograms: Vec::new(), exemplar_labels: Vec::new(), exemplars: Vec::new() };
        let mut symbols: Vec<Range<u32>> = Vec::new();
        let mut r = Reader { buf: &buf, pos: 0 };
        while r.pos < buf.len() {
            let (field, wire) = r.key()?;
            if field == 4 && wire == LEN {
                let s = r.len_delimited()?;
                std::str::from_utf8(&buf[s.clone()])
                    .map_err(|_| Error::Content(format!("remote_write 2.0 symbol {} is not UTF-8", symbols.len())))?;
                symbols.push(s.start as u32..s.end as u32);
            } else {
                r.skip(wire)?;
            }
        }
        // Metadata already taken from this request: (name, type, help, unit) by symbol offsets.
        let mut seen = std::collections::HashSet::new();
        let mut r = Reader { buf: &buf, pos: 0 };
        while r.pos < buf.len() {
            let (field, wire) = r.key()?;
            if field == 5 && wire == LEN {
                let ts = r.len_delimited()?;
                v.parse_series_v2(&buf, ts, &symbols, &mut seen)?;
            } else {
                r.skip(wire)?;
            }
        }
        v.buf = buf;
        Ok(v)
    }

    /// One 2.0 `TimeSeries { repeated uint32 labels_refs = 1; repeated Sample samples = 2;
    /// repeated Histogram histograms = 3; repeated Exemplar exemplars = 4; Metadata metadata =
    /// 5; int64 created_timestamp = 6; }`. Histograms and exemplars are read; the created
    /// timestamp is not kept.
    fn parse_series_v2(
        &mut self,
        buf: &[u8],
        range: Range<usize>,
        symbols: &[Range<u32>],
        seen: &mut std::collections::HashSet<(u32, u64, u32, u32)>,
    ) -> Result<()> {
        let first_label = self.labels.len();
        let first_sample = self.samples.len();
        let symbol = |index: u64| symbol_at(symbols, index, "series");
        // A name waiting for its value.
        let mut name: Option<Range<u32>> = None;
        // (type, help, unit)
        let mut metadata: Option<(u64, Range<u32>, Range<u32>)> = None;
        let mut r = Reader { buf: &buf[..range.end], pos: range.start };
        while r.pos < range.end {
            match r.key()? {
                (1, wire @ (LEN | VARINT)) => read_label_refs(&mut r, wire, symbols, "series", &mut name, &mut self.labels)?,
                (2, LEN) => {
                    let s = r.len_delimited()?;
                    self.parse_sample(buf, s)?;
                }
                (3, LEN) => {
                    let h = r.len_delimited()?;
                    self.push_histogram(&buf[h])?;
                }
                (4, LEN) => {
                    let e = r.len_delimited()?;
                    self.parse_exemplar(buf, e, Some(symbols))?;
                }
                (5, LEN) => {
                    let m = r.len_delimited()?;
                    let (mut kind, mut help, mut unit) = (0, 0, 0);
                    let mut mr = Reader { buf: &buf[..m.end], pos: m.start };
                    while mr.pos < m.end {
                        match mr.key()? {
                            (1, VARINT) => kind = mr.varint()?,
                            (3, VARINT) => help = mr.varint()?,
                            (4, VARINT) => unit = mr.varint()?,
                            (_, w) => mr.skip(w)?,
                        }
                    }
                    metadata = Some((kind, symbol(help)?, symbol(unit)?));
                }
                (_, w) => r.skip(w)?,
            }
        }
        if name.is_some() {
            return Err(Error::Content("remote_write 2.0 series has an odd number of label refs".into()));
        }
        self.finish_series(buf, first_label, first_sample)?;
        let Some((kind, help, unit)) = metadata else { return Ok(()) };
        if kind == 0 && help.is_empty() && unit.is_empty() {
            return Ok(());
        }
        let series_name = self.labels[first_label..]
            .iter()
            .find(|(k, _)| &buf[k.start as usize..k.end as usize] == METRIC_NAME.as_bytes())
            .map(|(_, v)| v.clone())
            .expect("finish_series checked the name");
        if !seen.insert((series_name.start, kind, help.start, unit.start)) {
            return Ok(());
        }
        let text = |r: &Range<u32>| String::from_utf8_lossy(&buf[r.start as usize..r.end as usize]).into_owned();
        let r#type = crate::remote_write::type_of_number(i32::try_from(kind).unwrap_or(0));
        let series_name = text(&series_name);
        self.metadata.push(MetricMetadata {
            metric_family_name: family_of(&series_name, r#type).to_string(),
            r#type,
            help: text(&help),
            unit: text(&unit),
        });
        Ok(())
    }

    fn parse_series(&mut self, buf: &[u8], range: Range<usize>) -> Result<()> {
        let first_label = self.labels.len();
        let first_sample = self.samples.len();
        let mut r = Reader { buf: &buf[..range.end], pos: range.start };
        while r.pos < range.end {
            let (field, wire) = r.key()?;
            match (field, wire) {
                (1, LEN) => {
                    let l = r.len_delimited()?;
                    self.labels.push(parse_label(buf, l, "label name or value")?);
                }
                (2, LEN) => {
                    let s = r.len_delimited()?;
                    self.parse_sample(buf, s)?;
                }
                (3, LEN) => {
                    let e = r.len_delimited()?;
                    self.parse_exemplar(buf, e, None)?;
                }
                (4, LEN) => {
                    let h = r.len_delimited()?;
                    self.push_histogram(&buf[h])?;
                }
                (_, w) => r.skip(w)?,
            }
        }
        self.finish_series(buf, first_label, first_sample)
    }

    /// An exemplar of the series being parsed (the next one [`WriteView::finish_series`] records):
    /// 1.0's `Exemplar { repeated Label labels = 1; double value = 2; int64 timestamp = 3; }`,
    /// or with `symbols` 2.0's, whose field 1 is `repeated uint32 labels_refs`.
    fn parse_exemplar(&mut self, buf: &[u8], range: Range<usize>, symbols: Option<&[Range<u32>]>) -> Result<()> {
        let first = self.exemplar_labels.len();
        let (mut value, mut timestamp_ms) = (0f64, 0i64);
        let mut name: Option<Range<u32>> = None;
        let mut r = Reader { buf: &buf[..range.end], pos: range.start };
        while r.pos < range.end {
            match (r.key()?, symbols) {
                ((1, LEN), None) => {
                    let l = r.len_delimited()?;
                    self.exemplar_labels.push(parse_label(buf, l, "exemplar label")?);
                }
                ((1, wire @ (LEN | VARINT)), Some(symbols)) => {
                    read_label_refs(&mut r, wire, symbols, "exemplar", &mut name, &mut self.exemplar_labels)?;
                }
                ((2, FIXED64), _) => value = f64::from_bits(r.fixed64()?),
                ((3, VARINT), _) => timestamp_ms = r.varint()? as i64,
                ((_, w), _) => r.skip(w)?,
            }
        }
        if name.is_some() {
            return Err(Error::Content("remote_write 2.0 exemplar has an odd number of label refs".into()));
        }
        self.exemplars.push(ExemplarRef {
            series: self.series.len() as u32,
            labels: first as u32..self.exemplar_labels.len() as u32,
            value,
            timestamp_ms,
        });
        Ok(())
    }

    /// A native histogram of the series being parsed (the next one [`WriteView::finish_series`]
    /// records).
    fn push_histogram(&mut self, msg: &[u8]) -> Result<()> {
        let (t, h) = crate::histogram::parse_histogram(msg)?;
        self.histograms.push((self.series.len() as u32, t, std::sync::Arc::new(h)));
        Ok(())
    }

    /// A `Sample { double value = 1; int64 timestamp = 2; }` (the same message in 1.0 and 2.0).
    fn parse_sample(&mut self, buf: &[u8], s: Range<usize>) -> Result<()> {
        // What every sender writes: value (field 1, fixed64), then timestamp (field 2, varint),
        // nothing else.
        let b = &buf[s.clone()];
        if b.len() > 10 && b[0] == 0x09 && b[9] == 0x10 {
            let mut tr = Reader { buf: &buf[..s.end], pos: s.start + 10 };
            let t = tr.varint()? as i64;
            if tr.pos == s.end {
                let val = f64::from_bits(u64::from_le_bytes(b[1..9].try_into().expect("8 bytes")));
                self.samples.push((t, val));
                return Ok(());
            }
        }
        let (mut t, mut val) = (0i64, 0f64);
        let mut sr = Reader { buf: &buf[..s.end], pos: s.start };
        while sr.pos < s.end {
            match sr.key()? {
                (1, FIXED64) => val = f64::from_bits(sr.fixed64()?),
                (2, VARINT) => t = sr.varint()? as i64,
                (_, w) => sr.skip(w)?,
            }
        }
        self.samples.push((t, val));
        Ok(())
    }

    /// Puts the labels pushed since `first_label` in canonical order, checks the series has a
    /// name, and records the series (its labels and the samples pushed since `first_sample`).
    fn finish_series(&mut self, buf: &[u8], first_label: usize, first_sample: usize) -> Result<()> {
        // Canonical order, as `Labels::from_pairs`: the later of a repeated name wins (reverse,
        // stable sort, keep the first), empty values are dropped. Senders such as Prometheus
        // already send names sorted and unique, which needs none of that.
        let name = |r: &Range<u32>| &buf[r.start as usize..r.end as usize];
        let ls = &mut self.labels[first_label..];
        if !ls.windows(2).all(|w| name(&w[0].0) < name(&w[1].0)) {
            ls.reverse();
            ls.sort_by(|a, b| name(&a.0).cmp(name(&b.0)));
            let mut keep = first_label;
            for i in first_label..self.labels.len() {
                let (n, value) = self.labels[i].clone();
                if keep > first_label && name(&self.labels[keep - 1].0) == name(&n) {
                    continue;
                }
                // A dropped empty value still shadows an earlier pair of the same name.
                self.labels[keep] = (n, value);
                keep += 1;
            }
            self.labels.truncate(keep);
        }
        let mut w = first_label;
        for i in first_label..self.labels.len() {
            if !self.labels[i].1.is_empty() {
                self.labels.swap(w, i);
                w += 1;
            }
        }
        self.labels.truncate(w);
        let has_name = self.labels[first_label..].iter().any(|(k, _)| &buf[k.start as usize..k.end as usize] == METRIC_NAME.as_bytes());
        if !has_name {
            let labels = Labels::from_pairs(self.labels[first_label..].iter().map(|(k, v)| {
                (String::from_utf8_lossy(&buf[k.start as usize..k.end as usize]).into_owned(), String::from_utf8_lossy(&buf[v.start as usize..v.end as usize]).into_owned())
            }));
            return Err(Error::Content(format!("remote_write series {labels} has no __name__")));
        }
        self.series.push((first_label as u32..self.labels.len() as u32, first_sample as u32..self.samples.len() as u32));
        Ok(())
    }

    fn str(&self, r: &Range<u32>) -> &str {
        // Checked to be UTF-8 when parsed.
        std::str::from_utf8(&self.buf[r.start as usize..r.end as usize]).unwrap_or_default()
    }

    /// What the request carried that is not stored.
    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// Number of native histogram samples.
    pub fn histogram_count(&self) -> usize {
        self.histograms.len()
    }

    /// The native histogram samples with their series' labels, in request order.
    pub fn histogram_samples(&self) -> Vec<crate::HistogramSample> {
        self.histograms
            .iter()
            .map(|(series, t, h)| {
                let (labels, _) = &self.series[*series as usize];
                let labels = &self.labels[labels.start as usize..labels.end as usize];
                crate::HistogramSample {
                    labels: Labels::from_pairs(labels.iter().map(|(k, v)| (self.str(k), self.str(v)))),
                    timestamp_ms: *t,
                    histogram: h.clone(),
                }
            })
            .collect()
    }

    /// Number of exemplars.
    pub fn exemplar_count(&self) -> usize {
        self.exemplars.len()
    }

    /// The exemplars with their series, in request order; an exemplar's labels in the
    /// canonical order of [`Labels::from_pairs`].
    pub fn exemplars(&self) -> impl ExactSizeIterator<Item = (SeriesView<'_>, crate::Exemplar)> + '_ {
        self.exemplars.iter().map(move |e| {
            let labels = &self.exemplar_labels[e.labels.start as usize..e.labels.end as usize];
            let exemplar = crate::Exemplar {
                labels: Labels::from_pairs(labels.iter().map(|(k, v)| (self.str(k), self.str(v)))),
                value: e.value,
                timestamp_ms: e.timestamp_ms,
            };
            (self.series_at(e.series as usize), exemplar)
        })
    }

    fn series_at(&self, i: usize) -> SeriesView<'_> {
        let (l, s) = &self.series[i];
        SeriesView { view: self, labels: &self.labels[l.start as usize..l.end as usize], samples: &self.samples[s.start as usize..s.end as usize] }
    }

    /// The family metadata the request carries.
    pub fn metadata(&self) -> &[MetricMetadata] {
        &self.metadata
    }

    /// Number of samples.
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// The series in request order.
    pub fn series(&self) -> impl ExactSizeIterator<Item = SeriesView<'_>> + '_ {
        (0..self.series.len()).map(move |i| self.series_at(i))
    }

    /// Every sample with owned labels (the slow path, e.g. when labels must be rewritten).
    pub fn to_samples(&self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.samples.len());
        for s in self.series() {
            let labels = s.to_labels();
            out.extend(s.samples.iter().map(|&(t, v)| Sample::new(labels.clone(), t, v)));
        }
        out
    }
}

/// A 1.0 `Label { string name = 1; string value = 2; }` at `l`: the byte ranges of its name and
/// value, checked to be UTF-8 (`what` names the label in the error).
fn parse_label(buf: &[u8], l: Range<usize>, what: &str) -> Result<(Range<u32>, Range<u32>)> {
    let (mut name, mut value) = (l.start..l.start, l.start..l.start);
    let mut lr = Reader { buf: &buf[..l.end], pos: l.start };
    while lr.pos < l.end {
        match lr.key()? {
            (1, LEN) => name = lr.len_delimited()?,
            (2, LEN) => value = lr.len_delimited()?,
            (_, w) => lr.skip(w)?,
        }
    }
    for part in [&name, &value] {
        std::str::from_utf8(&buf[part.clone()]).map_err(|_| Error::Content(format!("remote_write {what} is not UTF-8")))?;
    }
    Ok((name.start as u32..name.end as u32, value.start as u32..value.end as u32))
}

/// The byte range of symbol `index` of a 2.0 request, or the error naming what referred to it.
fn symbol_at(symbols: &[Range<u32>], index: u64, what: &str) -> Result<Range<u32>> {
    usize::try_from(index).ok().and_then(|i| symbols.get(i)).cloned().ok_or_else(|| {
        Error::Content(format!("remote_write 2.0 {what} refers to symbol {index}, but the request has {}", symbols.len()))
    })
}

/// 2.0 `repeated uint32 labels_refs = 1` at `r`, read with its wire type: all refs when packed,
/// one when not. Refs come as name, value, name, value…: a name waits in `name` until its value
/// comes, then the pair joins `labels`. `what` names the message in errors.
fn read_label_refs(
    r: &mut Reader<'_>,
    wire: u8,
    symbols: &[Range<u32>],
    what: &str,
    name: &mut Option<Range<u32>>,
    labels: &mut Vec<(Range<u32>, Range<u32>)>,
) -> Result<()> {
    let mut pair_up = |index: u64| -> Result<()> {
        let s = symbol_at(symbols, index, what)?;
        match name.take() {
            None => *name = Some(s),
            Some(n) => labels.push((n, s)),
        }
        Ok(())
    };
    if wire == VARINT {
        return pair_up(r.varint()?);
    }
    let refs = r.len_delimited()?;
    let mut packed = Reader { buf: &r.buf[..refs.end], pos: refs.start };
    while packed.pos < refs.end {
        pair_up(packed.varint()?)?;
    }
    Ok(())
}

/// The family a 2.0 series' metadata describes: a histogram's or summary's series name without
/// the suffix its type adds (`rpc_seconds_bucket` → `rpc_seconds`); other series name their
/// family as the Prometheus text format's TYPE line does (`http_requests_total`).
fn family_of(series: &str, t: crate::MetricType) -> &str {
    use crate::MetricType::{GaugeHistogram, Histogram, Summary};
    if !matches!(t, Histogram | GaugeHistogram | Summary) {
        return series;
    }
    t.series_suffixes().iter().find_map(|s| series.strip_suffix(s).filter(|f| !f.is_empty())).unwrap_or(series)
}

/// `prometheus.MetricMetadata { MetricType type = 1; string metric_family_name = 2; string help =
/// 4; string unit = 5; }`; a family name is required, as the owned decoder requires it.
fn parse_metadata(buf: &[u8], range: Range<usize>) -> Result<MetricMetadata> {
    let mut r = Reader { buf: &buf[..range.end], pos: range.start };
    let (mut kind, mut name, mut help, mut unit) = (0i32, String::new(), String::new(), String::new());
    let text = |r: Range<usize>| {
        std::str::from_utf8(&buf[r]).map(str::to_string).map_err(|_| Error::Content("remote_write metadata is not UTF-8".into()))
    };
    while r.pos < range.end {
        match r.key()? {
            (1, VARINT) => kind = r.varint()? as i32,
            (2, LEN) => name = text(r.len_delimited()?)?,
            (4, LEN) => help = text(r.len_delimited()?)?,
            (5, LEN) => unit = text(r.len_delimited()?)?,
            (_, w) => r.skip(w)?,
        }
    }
    if name.is_empty() {
        return Err(Error::Content("remote_write metadata without a metric_family_name".into()));
    }
    Ok(MetricMetadata { metric_family_name: name, r#type: crate::remote_write::type_of_number(kind), help, unit })
}

// Protobuf wire types.
pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A protobuf reader over a message's bytes (also [`crate::histogram::parse_histogram`]'s).
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

fn truncated() -> Error {
    Error::Content("remote_write protobuf is truncated or malformed".into())
}

impl Reader<'_> {
    pub(crate) fn varint(&mut self) -> Result<u64> {
        // Keys and lengths are mostly one byte; timestamps six. With ten bytes left (the most
        // a varint takes), no byte needs its own bounds check.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        if let Some(bytes) = self.buf.get(self.pos..self.pos + 10) {
            let mut out = 0u64;
            for (i, &b) in bytes.iter().enumerate() {
                out |= u64::from(b & 0x7f) << (7 * i);
                if b < 0x80 {
                    self.pos += i + 1;
                    return Ok(out);
                }
            }
            return Err(truncated());
        }
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(truncated)?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(out);
            }
        }
        Err(truncated())
    }

    pub(crate) fn key(&mut self) -> Result<(u64, u8)> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64> {
        let b = self.buf.get(self.pos..self.pos + 8).ok_or_else(truncated)?;
        self.pos += 8;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| truncated())?))
    }

    pub(crate) fn len_delimited(&mut self) -> Result<Range<usize>> {
        let n = usize::try_from(self.varint()?).map_err(|_| truncated())?;
        let start = self.pos;
        let end = start.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(truncated)?;
        self.pos = end;
        Ok(start..end)
    }

    pub(crate) fn skip(&mut self, wire: u8) -> Result<()> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.len_delimited().map(drop),
            FIXED32 => {
                self.pos = self.pos.checked_add(4).filter(|&e| e <= self.buf.len()).ok_or_else(truncated)?;
                Ok(())
            }
            other => Err(Error::Content(format!("remote_write protobuf has an unsupported wire type {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::remote_write::{Label, RemoteSample, TimeSeries, WriteRequest};

    fn label(k: &str, v: &str) -> Label {
        Label { name: k.into(), value: v.into() }
    }

    type Series = (Vec<Label>, Vec<(i64, f64)>);

    fn request(series: Vec<Series>) -> Vec<u8> {
        WriteRequest {
            timeseries: series
                .into_iter()
                .map(|(labels, samples)| TimeSeries {
                    labels,
                    samples: samples.into_iter().map(|(timestamp, value)| RemoteSample { value, timestamp }).collect(),
                    histograms: Vec::new(),
                })
                .collect(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn agrees_with_the_owned_decoder() {
        // Unsorted, repeated names, empty values, negative and zero timestamps, special floats.
        let raw = request(vec![
            (vec![label("job", "node"), label("__name__", "up"), label("a", "1"), label("a", "2")], vec![(1000, 1.0), (2000, 0.0)]),
            (vec![label("__name__", "x"), label("z", ""), label("b", "v"), label("b", "")], vec![(-5, f64::INFINITY), (0, -0.0)]),
            (vec![label("__name__", "y"), label("c", ""), label("c", "kept")], vec![(7, 1e-300)]),
            (vec![label("__name__", "empty_series")], vec![]),
            (vec![label("__name__", "wide")], vec![(1_795_377_007_123, 3.5), (i64::MAX, 1.0), (i64::MIN, 2.0), (1, f64::NAN)]),
        ]);
        let view = WriteView::parse(raw.clone()).unwrap();
        let owned = crate::remote_write::decode_uncompressed(&raw).unwrap();
        let from_view = view.to_samples();
        assert_eq!(from_view.len(), owned.len());
        for (a, b) in from_view.iter().zip(&owned) {
            assert_eq!(a.labels, b.labels);
            assert_eq!(a.timestamp_ms, b.timestamp_ms);
            assert_eq!(a.value.to_bits(), b.value.to_bits());
        }
        assert_eq!(view.sample_count(), 9);
        assert_eq!(view.series().len(), 5);
        // The borrowed labels are the canonical ones, checked by hand for two series.
        let s: Vec<_> = view.series().collect();
        assert_eq!(s[0].labels().collect::<Vec<_>>(), vec![("__name__", "up"), ("a", "2"), ("job", "node")]);
        assert_eq!(s[1].labels().collect::<Vec<_>>(), vec![("__name__", "x")]);
        assert_eq!(s[2].labels().collect::<Vec<_>>(), vec![("__name__", "y"), ("c", "kept")]);
    }

    /// Views parsed into the vectors of dropped ones (a large request, a failed one, then
    /// smaller ones) see only their own request.
    #[test]
    fn reused_buffers_carry_nothing_over() {
        let wide: Vec<Series> = (0..200)
            .map(|i| (vec![label("__name__", "m"), label("i", &i.to_string()), label("pad", &"x".repeat(i))], vec![(i as i64, i as f64), (i as i64 + 1, 0.5)]))
            .collect();
        let small = vec![(vec![label("__name__", "up"), label("job", "a")], vec![(7, 1.0)])];
        let bodies = [request(wide), request(vec![(vec![label("job", "nameless")], vec![(1, 1.0)])]), request(small.clone()), request(small)];
        for (n, raw) in bodies.iter().enumerate() {
            let body = snap::raw::Encoder::new().compress_vec(raw).unwrap();
            for view in [WriteView::decode_snappy(&body), WriteView::parse(raw.clone())] {
                match crate::remote_write::decode_uncompressed(raw) {
                    Ok(owned) => {
                        let view = view.unwrap();
                        assert_eq!(view.sample_count(), owned.len(), "request {n}");
                        assert_eq!(view.to_samples(), owned, "request {n}");
                    }
                    Err(_) => assert!(view.is_err(), "request {n}"),
                }
            }
        }
        assert!(WriteView::decode_snappy(b"not snappy").is_err());
        let up = WriteView::decode_snappy(&snap::raw::Encoder::new().compress_vec(&bodies[3]).unwrap()).unwrap();
        assert_eq!(up.to_samples(), vec![Sample::new(Labels::from_pairs([("__name__", "up"), ("job", "a")]), 7, 1.0)]);
    }

    #[test]
    fn skips_unknown_fields_and_rejects_bad_input() {
        // A field this version does not know (5 of WriteRequest).
        let mut raw = request(vec![(vec![label("__name__", "up")], vec![(1, 2.0)])]);
        raw.extend_from_slice(&[0x2a, 0x02, 0x08, 0x01]);
        let view = WriteView::parse(raw).unwrap();
        assert_eq!(view.to_samples(), vec![Sample::new(Labels::from_pairs([("__name__", "up")]), 1, 2.0)]);

        // A sample with its fields in the other order (timestamp 300, then value 1.5).
        let sample = [&[0x10, 0xac, 0x02, 0x09][..], &1.5f64.to_le_bytes()].concat();
        let name = [&[0x0a, 0x08][..], b"__name__", &[0x12, 0x02], b"up"].concat();
        let series = [&[0x0a, name.len() as u8][..], &name, &[0x12, sample.len() as u8], &sample].concat();
        let raw = [&[0x0a, series.len() as u8][..], &series].concat();
        assert_eq!(WriteView::parse(raw).unwrap().to_samples(), vec![Sample::new(Labels::from_pairs([("__name__", "up")]), 300, 1.5)]);

        let nameless = request(vec![(vec![label("job", "x")], vec![(1, 1.0)])]);
        let e = WriteView::parse(nameless).err().unwrap().to_string();
        assert!(e.contains("has no __name__") && e.contains("job"), "{e}");
        let good = request(vec![(vec![label("__name__", "up")], vec![(1, 2.0)])]);
        for cut in 1..good.len() {
            assert!(WriteView::parse(good[..cut].to_vec()).is_err(), "truncated at {cut} accepted");
        }
        let mut not_utf8 = request(vec![(vec![label("__name__", "up"), label("k", "v")], vec![(1, 2.0)])]);
        let at = not_utf8.iter().rposition(|&b| b == b'v').unwrap();
        not_utf8[at] = 0xff;
        assert!(WriteView::parse(not_utf8).err().unwrap().to_string().contains("UTF-8"));
        assert!(WriteView::decode_snappy(b"not snappy").is_err());
        // Metadata without a family name, as the owned decoder rejects it.
        let mut nameless_meta = request(vec![]);
        nameless_meta.extend_from_slice(&[0x1a, 0x02, 0x08, 0x01]);
        assert!(WriteView::parse(nameless_meta).err().unwrap().to_string().contains("metric_family_name"));
    }

    /// Exemplars and native histograms are read with their series, and the series' float
    /// samples too; an invalid histogram fails the request with its reason.
    #[test]
    fn exemplars_and_native_histograms_are_read() {
        let name = [&[0x0a, 0x08][..], b"__name__", &[0x12, 0x02], b"up"].concat();
        let sample = [&[0x09][..], &2.5f64.to_le_bytes(), &[0x10, 0x07]].concat();
        // Exemplar { labels: [trace_id="abc"], value: 2.5 (field 2, fixed64), timestamp: 7 }.
        let trace = [&[0x0a, 0x08][..], b"trace_id", &[0x12, 0x03], b"abc"].concat();
        let exemplar = [&[0x0a, trace.len() as u8][..], &trace, &[0x11], &2.5f64.to_le_bytes(), &[0x18, 0x07]].concat();
        // The exemplar (field 3) before the samples, and two histograms (field 4): one
        // observation in the zero bucket (count_int 1, zero_count_int 1), and an empty one.
        let series = [
            &[0x0a, name.len() as u8][..],
            &name,
            &[0x1a, exemplar.len() as u8],
            &exemplar,
            &[0x12, sample.len() as u8],
            &sample,
            &[0x22, 0x04, 0x08, 0x01, 0x30, 0x01],
            &[0x22, 0x00],
        ]
        .concat();
        let raw = [&[0x0a, series.len() as u8][..], &series].concat();
        let view = WriteView::parse(raw.clone()).unwrap();
        assert_eq!(view.dropped(), Dropped::default());
        let one = crate::FloatHistogram { count: 1.0, zero_count: 1.0, ..Default::default() };
        let got: Vec<(Labels, i64, crate::FloatHistogram)> =
            view.histogram_samples().into_iter().map(|h| (h.labels, h.timestamp_ms, (*h.histogram).clone())).collect();
        let name_only = Labels::from_pairs([("__name__", "up")]);
        assert_eq!(got, vec![(name_only.clone(), 0, one), (name_only, 0, crate::FloatHistogram::default())]);
        // A count the buckets do not add up to: the request is refused, naming the reason.
        let mut wrong = raw.clone();
        let at = wrong.windows(6).position(|w| w == [0x22, 0x04, 0x08, 0x01, 0x30, 0x01]).unwrap();
        wrong[at + 3] = 0x02;
        let e = WriteView::parse(wrong).err().unwrap().to_string();
        assert!(e.contains("1 observations found in buckets, but the Count field is 2"), "{e}");
        assert_eq!(view.exemplar_count(), 1);
        let got: Vec<(Labels, crate::Exemplar)> = view.exemplars().map(|(s, e)| (s.to_labels(), e)).collect();
        let up = Labels::from_pairs([("__name__", "up")]);
        assert_eq!(got, vec![(up.clone(), crate::Exemplar { labels: Labels::from_pairs([("trace_id", "abc")]), value: 2.5, timestamp_ms: 7 })]);
        assert_eq!(view.to_samples(), vec![Sample::new(up, 7, 2.5)]);
        assert_eq!(crate::remote_write::decode_uncompressed(&raw).unwrap(), view.to_samples());
        let plain = WriteView::parse(request(vec![(vec![label("__name__", "up")], vec![(1, 1.0)])])).unwrap();
        assert_eq!((plain.dropped(), plain.exemplar_count()), (Dropped::default(), 0));
    }

    #[test]
    fn metadata_agrees_with_the_owned_decoder() {
        use crate::MetricType;
        let meta = |name: &str, t: MetricType, help: &str, unit: &str| MetricMetadata {
            metric_family_name: name.into(),
            r#type: t,
            help: help.into(),
            unit: unit.into(),
        };
        let metadata = vec![
            meta("node_cpu_seconds_total", MetricType::Counter, "Seconds the CPUs spent in each mode.", "seconds"),
            meta("h", MetricType::Histogram, "", ""),
            meta("g", MetricType::Gauge, "ünïcode help", ""),
        ];
        let samples = vec![Sample::new(Labels::from_pairs([("__name__", "g")]), 5, 1.5)];
        let body = crate::remote_write::encode_with_metadata(&samples, &metadata);
        let view = WriteView::decode_snappy(&body).unwrap();
        assert_eq!(view.metadata(), metadata.as_slice());
        assert_eq!(view.metadata(), crate::remote_write::decode_batch(&body).unwrap().metadata.as_slice());
        assert_eq!(view.to_samples(), samples);
    }

    mod v2 {
        use prost::Message;

        use super::super::*;
        use crate::MetricType;
        use crate::remote_write::RemoteSample;
        use crate::remote_write_v2::{Exemplar, Histogram, Metadata, Request, RequestBuilder, TimeSeries};

        fn labels(pairs: &[(&str, &str)]) -> Labels {
            Labels::from_pairs(pairs.iter().copied())
        }

        /// Each series' labels and samples.
        type Read<'a> = Vec<(Vec<(&'a str, &'a str)>, Vec<(i64, f64)>)>;

        #[test]
        fn reads_series_samples_and_metadata_through_the_symbols() {
            let mut b = RequestBuilder::default();
            let cpu = labels(&[("__name__", "node_cpu_seconds_total"), ("cpu", "0"), ("mode", "idle")]);
            let cpu1 = labels(&[("__name__", "node_cpu_seconds_total"), ("cpu", "1"), ("mode", "idle")]);
            let bucket = labels(&[("__name__", "rpc_seconds_bucket"), ("le", "0.5")]);
            let count = labels(&[("__name__", "rpc_seconds_count")]);
            let help = "Seconds the CPUs spent in each mode.";
            b.series(&cpu, &[(1000, 10.5), (16_000, 11.25)], Some((MetricType::Counter, help, "seconds")));
            // The same metadata again: one entry.
            b.series(&cpu1, &[(1000, 3.0)], Some((MetricType::Counter, help, "seconds")));
            b.series(&bucket, &[(1000, 4.0)], Some((MetricType::Histogram, "RPC latency.", "")));
            b.series(&count, &[(1000, 7.0)], Some((MetricType::Histogram, "RPC latency.", "")));
            // No metadata, and metadata that says nothing.
            b.series(&labels(&[("__name__", "up")]), &[(1000, 1.0)], None);
            b.series(&labels(&[("__name__", "quiet")]), &[(1000, 2.0)], Some((MetricType::Unknown, "", "")));
            let view = WriteView::decode_snappy_v2(&b.encode_snappy()).unwrap();

            let got: Read<'_> = view.series().map(|s| (s.labels().collect(), s.samples.to_vec())).collect();
            assert_eq!(
                got,
                vec![
                    (vec![("__name__", "node_cpu_seconds_total"), ("cpu", "0"), ("mode", "idle")], vec![(1000, 10.5), (16_000, 11.25)]),
                    (vec![("__name__", "node_cpu_seconds_total"), ("cpu", "1"), ("mode", "idle")], vec![(1000, 3.0)]),
                    (vec![("__name__", "rpc_seconds_bucket"), ("le", "0.5")], vec![(1000, 4.0)]),
                    (vec![("__name__", "rpc_seconds_count")], vec![(1000, 7.0)]),
                    (vec![("__name__", "up")], vec![(1000, 1.0)]),
                    (vec![("__name__", "quiet")], vec![(1000, 2.0)]),
                ]
            );
            assert_eq!(view.sample_count(), 7);
            let meta = |name: &str, t: MetricType, help: &str, unit: &str| MetricMetadata {
                metric_family_name: name.into(),
                r#type: t,
                help: help.into(),
                unit: unit.into(),
            };
            // A histogram's series name their family without the suffix; both series of
            // `rpc_seconds` carry the same metadata but are different names, so two entries.
            assert_eq!(
                view.metadata(),
                &[
                    meta("node_cpu_seconds_total", MetricType::Counter, help, "seconds"),
                    meta("rpc_seconds", MetricType::Histogram, "RPC latency.", ""),
                    meta("rpc_seconds", MetricType::Histogram, "RPC latency.", ""),
                ]
            );
            assert_eq!(view.dropped(), Dropped::default());
        }

        /// Symbols after the series, unpacked label refs, unsorted names, histograms and
        /// exemplars, a created timestamp (not kept) and an unknown field.
        #[test]
        fn reads_any_field_order_and_counts_what_it_drops() {
            let raw_series = |refs: Vec<u32>| TimeSeries {
                labels_refs: refs,
                samples: vec![RemoteSample { value: 2.5, timestamp: 7 }],
                exemplars: vec![Exemplar { labels_refs: vec![3, 4], value: 2.5, timestamp: 7 }],
                created_timestamp: 5,
                ..Default::default()
            };
            // symbols: "", "__name__", "up", "trace_id", "abc", "job", "node"
            let symbols: Vec<String> = ["", "__name__", "up", "trace_id", "abc", "job", "node"].map(String::from).to_vec();
            let series = vec![
                // job before __name__: put in order.
                raw_series(vec![5, 6, 1, 2]),
                TimeSeries {
                    labels_refs: vec![1, 2],
                    histograms: vec![Histogram { count_int: Some(3), zero_count_int: Some(3), sum: 1.5, timestamp: 8, ..Default::default() }; 2],
                    ..Default::default()
                },
            ];
            let mut raw = Vec::new();
            for ts in &series {
                prost::encoding::message::encode(5, ts, &mut raw);
            }
            for s in &symbols {
                prost::encoding::string::encode(4, s, &mut raw);
            }
            // Field 9, varint: unknown.
            raw.extend_from_slice(&[0x48, 0x01]);
            let view = WriteView::parse_v2(raw).unwrap();
            let got: Read<'_> = view.series().map(|s| (s.labels().collect(), s.samples.to_vec())).collect();
            assert_eq!(got, vec![(vec![("__name__", "up"), ("job", "node")], vec![(7, 2.5)]), (vec![("__name__", "up")], vec![])]);
            assert_eq!(view.dropped(), Dropped::default());
            let three = crate::FloatHistogram { count: 3.0, zero_count: 3.0, sum: 1.5, ..Default::default() };
            let got: Vec<(Labels, i64, crate::FloatHistogram)> =
                view.histogram_samples().into_iter().map(|h| (h.labels, h.timestamp_ms, (*h.histogram).clone())).collect();
            assert_eq!(got, vec![(labels(&[("__name__", "up")]), 8, three.clone()), (labels(&[("__name__", "up")]), 8, three)]);
            // The exemplar's labels refer to symbols 3 and 4.
            let got: Vec<(Labels, crate::Exemplar)> = view.exemplars().map(|(s, e)| (s.to_labels(), e)).collect();
            assert_eq!(
                got,
                vec![(
                    labels(&[("__name__", "up"), ("job", "node")]),
                    crate::Exemplar { labels: labels(&[("trace_id", "abc")]), value: 2.5, timestamp_ms: 7 }
                )]
            );
            assert!(view.metadata().is_empty());

            // The same series with its label refs unpacked (one varint field each).
            let mut unpacked = Vec::new();
            for s in &symbols {
                prost::encoding::string::encode(4, s, &mut unpacked);
            }
            let mut ts = Vec::new();
            for r in [1u32, 2, 5, 6] {
                prost::encoding::uint32::encode(1, &r, &mut ts);
            }
            prost::encoding::message::encode(2, &RemoteSample { value: 2.5, timestamp: 7 }, &mut ts);
            prost::encoding::bytes::encode(5, &ts, &mut unpacked);
            let view = WriteView::parse_v2(unpacked).unwrap();
            assert_eq!(view.to_samples(), vec![Sample::new(labels(&[("__name__", "up"), ("job", "node")]), 7, 2.5)]);
        }

        #[test]
        fn rejects_bad_refs_names_and_truncation() {
            let request = |symbols: &[&str], refs: Vec<u32>| {
                Request {
                    symbols: symbols.iter().map(|s| s.to_string()).collect(),
                    timeseries: vec![TimeSeries {
                        labels_refs: refs,
                        samples: vec![RemoteSample { value: 1.0, timestamp: 1 }],
                        metadata: Some(Metadata { r#type: 2, help_ref: 0, unit_ref: 0 }),
                        ..Default::default()
                    }],
                }
                .encode_to_vec()
            };
            let err = |raw: Vec<u8>| WriteView::parse_v2(raw).err().expect("refused").to_string();
            let e = err(request(&["", "__name__", "up"], vec![1, 2, 1]));
            assert!(e.contains("odd number of label refs"), "{e}");
            let e = err(request(&["", "__name__", "up"], vec![1, 3]));
            assert!(e.contains("symbol 3") && e.contains("has 3"), "{e}");
            let e = err(request(&["", "job", "x"], vec![1, 2]));
            assert!(e.contains("has no __name__") && e.contains("job"), "{e}");
            let mut bad_help = Request::decode(request(&["", "__name__", "up"], vec![1, 2]).as_slice()).unwrap();
            bad_help.timeseries[0].metadata = Some(Metadata { r#type: 1, help_ref: 9, unit_ref: 0 });
            assert!(err(bad_help.encode_to_vec()).contains("symbol 9"));
            let mut bad_exemplar = Request::decode(request(&["", "__name__", "up"], vec![1, 2]).as_slice()).unwrap();
            bad_exemplar.timeseries[0].exemplars = vec![Exemplar { labels_refs: vec![1, 5], value: 1.0, timestamp: 1 }];
            let e = err(bad_exemplar.encode_to_vec());
            assert!(e.contains("exemplar refers to symbol 5"), "{e}");
            bad_exemplar.timeseries[0].exemplars[0].labels_refs = vec![1];
            assert!(err(bad_exemplar.encode_to_vec()).contains("odd number"));
            let mut not_utf8 = request(&["", "__name__", "up"], vec![1, 2]);
            let at = not_utf8.iter().position(|&b| b == b'u').unwrap();
            not_utf8[at] = 0xff;
            assert!(err(not_utf8).contains("not UTF-8"));
            let good = request(&["", "__name__", "up"], vec![1, 2]);
            assert_eq!(WriteView::parse_v2(good.clone()).unwrap().sample_count(), 1);
            // Cut anywhere inside the series (a cut between two symbols is a shorter valid request).
            let series_at = Request { symbols: ["", "__name__", "up"].map(String::from).to_vec(), timeseries: vec![] }.encode_to_vec().len();
            for cut in series_at + 1..good.len() {
                assert!(WriteView::parse_v2(good[..cut].to_vec()).is_err(), "truncated at {cut} accepted");
            }
            assert!(WriteView::decode_snappy_v2(b"not snappy").is_err());
        }

        /// A 1.0 `WriteRequest` read as 2.0 holds no series (its fields 1 and 3 are reserved in
        /// 2.0), rather than a misread one.
        #[test]
        fn a_one_point_zero_body_reads_as_empty() {
            let v1 = crate::remote_write::encode(&[Sample::new(labels(&[("__name__", "up")]), 1, 1.0)]);
            let view = WriteView::decode_snappy_v2(&v1).unwrap();
            assert_eq!(view.series().len(), 0);
        }
    }
}
