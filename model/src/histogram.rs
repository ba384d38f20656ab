//! Native histograms (Prometheus' sparse, exponential-bucket histograms, and the custom-bucket
//! variant with schema −53), as Pharos stores and answers them: always with float counts, as
//! Prometheus' `FloatHistogram` (an integer histogram of remote_write becomes one when read).
//!
//! A histogram has a `schema` (the resolution: bucket boundaries grow by the factor
//! `2^(2^-schema)`, schema −4 to 8), a zero bucket (`[-zero_threshold, zero_threshold]`), and
//! positive and negative buckets given as *spans* of consecutive bucket indexes with one count
//! per bucket. Positive bucket `i` holds the observations in `(base^(i-1), base^i]`, negative
//! bucket `i` those in `[-base^i, -base^(i-1))`. With schema −53 (custom buckets, "NHCB") the
//! bounds are `custom_values`: bucket `i` is `(custom_values[i-1], custom_values[i]]`, the first
//! starts at −Inf and the one after the last value ends at +Inf; there is no zero bucket and no
//! negative bucket.
//!
//! The wire format read here is remote_write's `Histogram` message (the same in 1.0's
//! `prometheus.Histogram` and 2.0's `io.prometheus.write.v2.Histogram`): see
//! [`parse_histogram`].

use crate::write_view::{FIXED64, LEN, Reader, VARINT};
use crate::{Error, Result};

/// Schema of custom-bucket histograms.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;
/// The lowest and highest exponential schema.
pub const EXPONENTIAL_SCHEMAS: std::ops::RangeInclusive<i32> = -4..=8;

/// What the sender said about a counter reset before this sample (remote_write's `ResetHint`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CounterResetHint {
    /// Nothing known: a reader compares with the sample before.
    #[default]
    Unknown = 0,
    /// A counter reset happened.
    CounterReset = 1,
    /// No counter reset happened.
    NotCounterReset = 2,
    /// The histogram is a gauge: it may go up and down.
    Gauge = 3,
}

impl CounterResetHint {
    /// The hint of the wire's number (an unknown number is `Unknown`).
    pub fn from_number(n: u64) -> CounterResetHint {
        match n {
            1 => CounterResetHint::CounterReset,
            2 => CounterResetHint::NotCounterReset,
            3 => CounterResetHint::Gauge,
            _ => CounterResetHint::Unknown,
        }
    }
}

/// A run of consecutive buckets: `offset` is the gap to the end of the previous span (for the
/// first span, the index of its first bucket), `length` the number of buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// Gap after the previous span, or the first bucket's index.
    pub offset: i32,
    /// Buckets in the span.
    pub length: u32,
}

/// A native histogram sample with float counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FloatHistogram {
    /// What the sender said about a counter reset.
    pub counter_reset_hint: CounterResetHint,
    /// Resolution (−4 to 8), or [`CUSTOM_BUCKETS_SCHEMA`].
    pub schema: i32,
    /// Observations with an absolute value up to this fall into the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// All observations.
    pub count: f64,
    /// The sum of all observations.
    pub sum: f64,
    /// Spans of the positive buckets.
    pub positive_spans: Vec<Span>,
    /// One count per positive bucket of the spans (absolute counts, not deltas).
    pub positive_buckets: Vec<f64>,
    /// Spans of the negative buckets.
    pub negative_spans: Vec<Span>,
    /// One count per negative bucket of the spans.
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of custom buckets (schema −53 only), strictly increasing.
    pub custom_values: Vec<f64>,
}

/// One bucket of a histogram with its bounds, as Prometheus' HTTP API lists them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Whether the lower bound belongs to the bucket.
    pub lower_inclusive: bool,
    /// Whether the upper bound belongs to the bucket.
    pub upper_inclusive: bool,
    /// Observations in the bucket.
    pub count: f64,
}

impl Bucket {
    /// The boundary rule of Prometheus' JSON: 0 open left (`(l, u]`), 1 open right (`[l, u)`),
    /// 2 open on both sides, 3 closed on both.
    pub fn boundary_rule(&self) -> u8 {
        match (self.lower_inclusive, self.upper_inclusive) {
            (false, true) => 0,
            (true, false) => 1,
            (false, false) => 2,
            (true, true) => 3,
        }
    }
}

impl FloatHistogram {
    /// Whether the buckets are custom ([`CUSTOM_BUCKETS_SCHEMA`]).
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// Checks what Prometheus checks before it stores a float histogram: a known schema, spans
    /// that cover exactly the given buckets (offsets after the first not negative), counts that
    /// are not negative, and for custom buckets strictly increasing finite bounds, no zero
    /// bucket and no negative buckets. Not the total `count` against the buckets' (floating
    /// point sums may differ): [`FloatHistogram::validate_integer_counts`] checks that for
    /// histograms sent with integer counts.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.uses_custom_buckets() {
            if self.zero_count != 0.0 || self.zero_threshold != 0.0 {
                return Err("custom buckets: must have a zero count and zero threshold of 0".into());
            }
            if !self.negative_spans.is_empty() || !self.negative_buckets.is_empty() {
                return Err("custom buckets: must not have negative buckets".into());
            }
            if let Some(w) = self.custom_values.windows(2).find(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less)) {
                return Err(format!("custom buckets: bounds must be strictly increasing, found {} then {}", w[0], w[1]));
            }
            if self.custom_values.iter().any(|v| v.is_nan() || *v == f64::INFINITY) {
                return Err("custom buckets: bounds must not be NaN or +Inf".into());
            }
            // The bucket indexes the spans reach must have a bound (the last one is +Inf).
            let mut index: i64 = -1;
            for (i, s) in self.positive_spans.iter().enumerate() {
                if s.offset < 0 && i > 0 {
                    return Err(format!("positive side: span number {} with offset {}", i + 1, s.offset));
                }
                index += s.offset as i64 + s.length as i64;
            }
            if index > self.custom_values.len() as i64 {
                return Err(format!(
                    "custom buckets: span reaches bucket {index}, but there are only {} bounds",
                    self.custom_values.len()
                ));
            }
            if self.positive_spans.first().is_some_and(|s| s.offset < 0) {
                return Err(format!("custom buckets: first span has a negative offset {}", self.positive_spans[0].offset));
            }
        } else {
            if !EXPONENTIAL_SCHEMAS.contains(&self.schema) {
                return Err(format!("histogram has an invalid schema {}, must be in {EXPONENTIAL_SCHEMAS:?} or {CUSTOM_BUCKETS_SCHEMA}", self.schema));
            }
            if !self.custom_values.is_empty() {
                return Err("histogram with exponential schema must not have custom bounds".into());
            }
            check_spans("negative", &self.negative_spans, self.negative_buckets.len())?;
            if self.zero_count < 0.0 {
                return Err(format!("zero bucket has a negative count {}", self.zero_count));
            }
        }
        check_spans("positive", &self.positive_spans, self.positive_buckets.len())?;
        for (side, counts) in [("positive", &self.positive_buckets), ("negative", &self.negative_buckets)] {
            if let Some((i, c)) = counts.iter().enumerate().find(|(_, c)| **c < 0.0) {
                return Err(format!("{side} side: bucket number {} has observation count of {c}", i + 1));
            }
        }
        Ok(())
    }

    /// What Prometheus checks of an integer histogram beyond [`FloatHistogram::validate`]: the
    /// buckets and the zero bucket add up to `count` (at most `count` when `sum` is NaN, as NaN
    /// observations are counted in no bucket).
    pub fn validate_integer_counts(&self) -> std::result::Result<(), String> {
        let buckets = self.zero_count + self.positive_buckets.iter().sum::<f64>() + self.negative_buckets.iter().sum::<f64>();
        if self.sum.is_nan() {
            if buckets > self.count {
                return Err(format!("{} observations found in buckets, but the Count field is {}", buckets, self.count));
            }
        } else if buckets != self.count && !(buckets.is_nan() && self.count.is_nan()) {
            return Err(format!("{} observations found in buckets, but the Count field is {}", buckets, self.count));
        }
        Ok(())
    }

    /// Every bucket with a count other than 0, in Prometheus' order: negative buckets from the
    /// lowest bound up, the zero bucket, then positive buckets (for custom buckets, the buckets in
    /// order of their bounds).
    pub fn buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::new();
        if self.uses_custom_buckets() {
            for (index, count) in indexed(&self.positive_spans, &self.positive_buckets) {
                let i = index as usize;
                let lower = if i == 0 { f64::NEG_INFINITY } else { self.custom_values.get(i - 1).copied().unwrap_or(f64::INFINITY) };
                let upper = self.custom_values.get(i).copied().unwrap_or(f64::INFINITY);
                // As Prometheus' bucket iterator: the first custom bucket is `[-Inf, u]`.
                out.push(Bucket { lower, upper, lower_inclusive: i == 0, upper_inclusive: true, count });
            }
            out.retain(|b| b.count != 0.0);
            return out;
        }
        let negative: Vec<(i32, f64)> = indexed(&self.negative_spans, &self.negative_buckets).collect();
        // As Prometheus lists them, a bucket reaching into the zero bucket ends at its edge.
        for &(index, count) in negative.iter().rev() {
            out.push(Bucket {
                lower: -exponential_bound(index, self.schema),
                upper: (-exponential_bound(index - 1, self.schema)).min(-self.zero_threshold),
                lower_inclusive: true,
                upper_inclusive: false,
                count,
            });
        }
        if self.zero_count != 0.0 {
            out.push(Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
            });
        }
        for (index, count) in indexed(&self.positive_spans, &self.positive_buckets) {
            out.push(Bucket {
                lower: exponential_bound(index - 1, self.schema).max(self.zero_threshold),
                upper: exponential_bound(index, self.schema),
                lower_inclusive: false,
                upper_inclusive: true,
                count,
            });
        }
        out.retain(|b| b.count != 0.0);
        out
    }
}

/// Bucket indexes a histogram may reach: far past the largest double at every schema (the
/// arithmetic on indexes stays in `i32`).
const MAX_BUCKET_INDEX: i64 = 1 << 24;

fn check_spans(side: &str, spans: &[Span], buckets: usize) -> std::result::Result<(), String> {
    let mut covered: u64 = 0;
    // The index after the last bucket so far (i64: offsets and lengths come from clients).
    let mut next: i64 = 0;
    for (i, s) in spans.iter().enumerate() {
        if i > 0 && s.offset < 0 {
            return Err(format!("{side} side: span number {} with offset {}", i + 1, s.offset));
        }
        next = if i == 0 { s.offset as i64 } else { next + s.offset as i64 } + s.length as i64;
        if next.abs() > MAX_BUCKET_INDEX || (next - s.length as i64).abs() > MAX_BUCKET_INDEX {
            return Err(format!("{side} side: span number {} reaches bucket index {next}, beyond ±{MAX_BUCKET_INDEX}", i + 1));
        }
        covered += s.length as u64;
    }
    if covered != buckets as u64 {
        return Err(format!("{side} side: spans need {covered} buckets, have {buckets} buckets"));
    }
    Ok(())
}

/// `(bucket index, count)` of every bucket the spans cover.
fn indexed<'a>(spans: &'a [Span], counts: &'a [f64]) -> impl Iterator<Item = (i32, f64)> + 'a {
    let mut index = 0i32;
    let mut first = true;
    spans
        .iter()
        .flat_map(move |s| {
            let start = if first { s.offset } else { index + s.offset };
            first = false;
            index = start + s.length as i32;
            start..start + s.length as i32
        })
        .zip(counts.iter().copied())
}

/// The upper bound of positive bucket `index` at exponential `schema`: `2^(index · 2^-schema)`,
/// computed as Prometheus does (exactly for schema ≤ 0; for schema > 0 from the fraction of the
/// bound within its power of two), with +Inf past the largest finite double.
pub fn exponential_bound(index: i32, schema: i32) -> f64 {
    if schema < 0 {
        let exp = (index as i64) << (-schema);
        if exp >= 1024 {
            return if exp == 1024 { f64::MAX } else { f64::INFINITY };
        }
        return ldexp(1.0, exp as i32);
    }
    let per_octave = 1i64 << schema;
    let frac_index = (index as i64).rem_euclid(per_octave);
    let exp = (index as i64).div_euclid(per_octave) + 1;
    // The bound is frac · 2^exp with frac = 2^(frac_index / per_octave) / 2 in [0.5, 1).
    let frac = OCTAVE_FRACTIONS[(frac_index << (8 - schema)) as usize];
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    if exp > 1025 || (exp == 1025 && frac > 0.5) {
        return f64::INFINITY;
    }
    ldexp(frac, exp as i32)
}

/// `2^(j/256) / 2` for `j` in `0..256`, each the double nearest the exact value (computed
/// with 60-digit decimal arithmetic; a platform's `exp2` may be one unit in the last place
/// off). Schema `s` uses every `2^(8-s)`-th entry. Prometheus' own table differs from these in
/// the last digit for some entries (e.g. 0.8408964152537144 for `2^(3/4)/2`, whose nearest
/// double prints as 0.8408964152537145).
// Entries such as 2^(128/256)/2 are 1/√2 by construction, not approximations of a constant.
#[allow(clippy::approx_constant)]
const OCTAVE_FRACTIONS: [f64; 256] = [
    0.5, 0.5013556375251013, 0.5027149505564014, 0.5040779490592088,
    0.5054446430258502, 0.5068150424757447, 0.5081891574554765, 0.509566998038869,
    0.5109485743270583, 0.5123338964485679, 0.5137229745593819, 0.5151158188430205,
    0.5165124395106142, 0.5179128468009786, 0.5193170509806894, 0.520725062344158,
    0.5221368912137069, 0.5235525479396449, 0.5249720429003436, 0.5263953865023132,
    0.5278225891802786, 0.5292536613972564, 0.530688613644631, 0.5321274564422322,
    0.5335702003384118, 0.5350168559101209, 0.5364674337629878, 0.5379219445313955,
    0.5393803988785599, 0.5408428074966076, 0.5423091811066546, 0.5437795304588848,
    0.5452538663326288, 0.5467321995364429, 0.5482145409081884, 0.549700901315111,
    0.5511912916539204, 0.5526857228508706, 0.5541842058618394, 0.5556867516724088,
    0.5571933712979462, 0.5587040757836846, 0.5602188762048034, 0.56173778366651,
    0.5632608093041209, 0.564787964283144, 0.5663192597993596, 0.5678547070789027,
    0.5693943173783458, 0.5709381019847808, 0.5724860722159021, 0.5740382394200895,
    0.5755946149764913, 0.577155210295108, 0.5787200368168756, 0.5802891060137494,
    0.5818624293887887, 0.5834400184762408, 0.5850218848416251, 0.5866080400818187,
    0.5881984958251406, 0.5897932637314379, 0.5913923554921705, 0.5929957828304969,
    0.5946035575013605, 0.5962156912915756, 0.5978321960199137, 0.5994530835371903,
    0.6010783657263515, 0.6027080545025619, 0.6043421618132908, 0.6059806996384006,
    0.6076236799902345, 0.6092711149137042, 0.6109230164863788, 0.6125793968185728,
    0.614240268053435, 0.6159056423670379, 0.6175755319684667, 0.6192499490999083,
    0.620928906036742, 0.622612415087629, 0.6243004885946024, 0.6259931389331581,
    0.6276903785123455, 0.6293922197748583, 0.6310986751971254, 0.6328097572894031,
    0.6345254785958666, 0.6362458516947014, 0.637970889198196, 0.6397006037528347,
    0.6414350080393891, 0.6431741147730128, 0.6449179367033329, 0.6466664866145447,
    0.6484197773255048, 0.6501778216898253, 0.6519406325959679, 0.6537082229673387,
    0.6554806057623822, 0.6572577939746773, 0.659039800633032, 0.6608266388015788,
    0.6626183215798707, 0.6644148621029772, 0.6662162735415808, 0.6680225691020729,
    0.6698337620266515, 0.6716498655934177, 0.6734708931164729, 0.6752968579460172,
    0.6771277734684463, 0.6789636531064506, 0.6808045103191124, 0.682650358602006,
    0.6845012114872953, 0.6863570825438342, 0.6882179853772651, 0.690083933630119,
    0.691954940981916, 0.6938310211492645, 0.6957121878859631, 0.6975984549831001,
    0.6994898362691556, 0.7013863456101024, 0.7032879969095077, 0.7051948041086353,
    0.7071067811865476, 0.7090239421602076, 0.7109463010845828, 0.7128738720527471,
    0.714806669195985, 0.7167447066838945, 0.7186879987244912, 0.7206365595643128,
    0.7225904034885233, 0.7245495448210175, 0.7265139979245263, 0.7284837772007219,
    0.7304588970903235, 0.7324393720732029, 0.7344252166684909, 0.7364164454346838,
    0.7384130729697497, 0.7404151139112359, 0.7424225829363762, 0.7444354947621985,
    0.7464538641456324, 0.7484777058836177, 0.7505070348132128, 0.7525418658117032,
    0.7545822137967114, 0.7566280937263049, 0.7586795205991074, 0.7607365094544073,
    0.7627990753722692, 0.7648672334736435, 0.766940998920478, 0.7690203869158284,
    0.7711054127039704, 0.7731960915705107, 0.7752924388425, 0.7773944698885443,
    0.7795022001189185, 0.7816156449856788, 0.7837348199827765, 0.7858597406461707,
    0.7879904225539432, 0.7901268813264123, 0.7922691326262469, 0.794417192158582,
    0.7965710756711335, 0.7987307989543135, 0.8008963778413467, 0.8030678282083855,
    0.8052451659746271, 0.8074284071024304, 0.8096175675974319, 0.8118126635086644,
    0.8140137109286739, 0.8162207259936375, 0.8184337248834822, 0.8206527238220032,
    0.8228777390769825, 0.8251087869603089, 0.8273458838280972, 0.8295890460808081,
    0.8318382901633682, 0.8340936325652912, 0.8363550898207983, 0.8386226785089392,
    0.8408964152537145, 0.8431763167241967, 0.8454623996346526, 0.8477546807446663,
    0.8500531768592617, 0.8523579048290256, 0.8546688815502315, 0.856986123964963,
    0.859309649061239, 0.861639473873137, 0.8639756154809188, 0.8663180910111555,
    0.8686669176368531, 0.8710221125775782, 0.8733836930995845, 0.8757516765159391,
    0.8781260801866497, 0.880506921518792, 0.8828942179666364, 0.8852879870317774,
    0.8876882462632606, 0.8900950132577122, 0.8925083056594675, 0.8949281411607005,
    0.8973545375015536, 0.8997875124702676, 0.902227083903312, 0.904673269685516,
    0.9071260877501994, 0.9095855560793042, 0.9120516927035267, 0.9145245157024486,
    0.9170040432046712, 0.9194902933879469, 0.921983284479313, 0.9244830347552254,
    0.9269895625416927, 0.9295028862144102, 0.9320230241988945, 0.9345499949706193,
    0.93708381705515, 0.9396245090282801, 0.9421720895161673, 0.9447265771954696,
    0.9472879907934828, 0.9498563490882777, 0.9524316709088371, 0.9550139751351949,
    0.9576032806985737, 0.9601996065815237, 0.9628029718180625, 0.9654133954938136,
    0.9680308967461472, 0.9706554947643202, 0.9732872087896166, 0.9759260581154892,
    0.9785720620877001, 0.9812252401044637, 0.9838856116165879, 0.9865531961276172,
    0.9892280131939755, 0.9919100824251097, 0.9945994234836332, 0.9972960560854701,
];

/// `x · 2^exp` without losing precision to an overflowing or underflowing power of two.
fn ldexp(x: f64, exp: i32) -> f64 {
    let mut x = x;
    let mut exp = exp;
    while exp > 1000 {
        x *= 2f64.powi(1000);
        exp -= 1000;
    }
    while exp < -1000 {
        x *= 2f64.powi(-1000);
        exp += 1000;
    }
    x * 2f64.powi(exp)
}

// ---- remote_write's `Histogram` message ----

/// Reads remote_write's `Histogram { oneof count { uint64 count_int = 1; double count_float = 2; }
/// double sum = 3; sint32 schema = 4; double zero_threshold = 5; oneof zero_count { uint64
/// zero_count_int = 6; double zero_count_float = 7; } repeated BucketSpan negative_spans = 8;
/// repeated sint64 negative_deltas = 9; repeated double negative_counts = 10; repeated BucketSpan
/// positive_spans = 11; repeated sint64 positive_deltas = 12; repeated double positive_counts =
/// 13; ResetHint reset_hint = 14; int64 timestamp = 15; repeated double custom_values = 16; }`
/// (`BucketSpan { sint32 offset = 1; uint32 length = 2; }`), the same message in remote_write 1.0
/// and 2.0, with the remote_write parser's protobuf [`Reader`]. An integer histogram's bucket
/// deltas become absolute float counts. Returns the timestamp (ms) and the histogram, validated
/// ([`FloatHistogram::validate`], and for integer counts
/// [`FloatHistogram::validate_integer_counts`]).
pub fn parse_histogram(msg: &[u8]) -> Result<(i64, FloatHistogram)> {
    let bad = |what: &str| Error::Content(format!("remote_write histogram: {what}"));
    let mut h = FloatHistogram::default();
    let mut timestamp = 0i64;
    let (mut neg_deltas, mut pos_deltas): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
    let (mut int_count, mut int_zero) = (None::<u64>, None::<u64>);
    let mut r = Reader { buf: msg, pos: 0 };
    while r.pos < msg.len() {
        match r.key()? {
            (1, VARINT) => int_count = Some(r.varint()?),
            (2, FIXED64) => h.count = f64::from_bits(r.fixed64()?),
            (3, FIXED64) => h.sum = f64::from_bits(r.fixed64()?),
            (4, VARINT) => {
                let v = unzigzag(r.varint()?);
                h.schema = i32::try_from(v).map_err(|_| bad(&format!("schema {v} out of range")))?;
            }
            (5, FIXED64) => h.zero_threshold = f64::from_bits(r.fixed64()?),
            (6, VARINT) => int_zero = Some(r.varint()?),
            (7, FIXED64) => h.zero_count = f64::from_bits(r.fixed64()?),
            (8, LEN) => h.negative_spans.push(span(&mut r).ok_or_else(|| bad("malformed negative span"))?),
            (9, w) => sint64s(&mut r, w, &mut neg_deltas)?,
            (10, w) => doubles(&mut r, w, &mut h.negative_buckets)?,
            (11, LEN) => h.positive_spans.push(span(&mut r).ok_or_else(|| bad("malformed positive span"))?),
            (12, w) => sint64s(&mut r, w, &mut pos_deltas)?,
            (13, w) => doubles(&mut r, w, &mut h.positive_buckets)?,
            (14, VARINT) => h.counter_reset_hint = CounterResetHint::from_number(r.varint()?),
            (15, VARINT) => timestamp = r.varint()? as i64,
            (16, w) => doubles(&mut r, w, &mut h.custom_values)?,
            (_, w) => r.skip(w)?,
        }
    }
    let is_int = int_count.is_some() || int_zero.is_some() || !neg_deltas.is_empty() || !pos_deltas.is_empty();
    if is_int {
        if !h.negative_buckets.is_empty() || !h.positive_buckets.is_empty() {
            return Err(bad("mixes integer bucket deltas and float bucket counts"));
        }
        h.count = int_count.unwrap_or(0) as f64;
        h.zero_count = int_zero.unwrap_or(0) as f64;
        h.negative_buckets = absolute(&neg_deltas).ok_or_else(|| bad("negative bucket deltas overflow"))?;
        h.positive_buckets = absolute(&pos_deltas).ok_or_else(|| bad("positive bucket deltas overflow"))?;
    }
    h.validate().map_err(|e| bad(&e))?;
    if is_int {
        h.validate_integer_counts().map_err(|e| bad(&e))?;
    }
    Ok((timestamp, h))
}

/// Absolute counts of an integer histogram's deltas (each bucket's count minus the one before).
fn absolute(deltas: &[i64]) -> Option<Vec<f64>> {
    let mut c: i64 = 0;
    deltas
        .iter()
        .map(|d| {
            c = c.checked_add(*d)?;
            Some(c as f64)
        })
        .collect()
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A `BucketSpan` message; `None` when malformed or out of range.
fn span(r: &mut Reader<'_>) -> Option<Span> {
    let range = r.len_delimited().ok()?;
    let mut m = Reader { buf: &r.buf[..range.end], pos: range.start };
    let mut s = Span::default();
    while m.pos < range.end {
        match m.key().ok()? {
            (1, VARINT) => s.offset = i32::try_from(unzigzag(m.varint().ok()?)).ok()?,
            (2, VARINT) => s.length = u32::try_from(m.varint().ok()?).ok()?,
            (_, w) => m.skip(w).ok()?,
        }
    }
    Some(s)
}

/// A repeated `sint64`, packed (`LEN`) or not.
fn sint64s(r: &mut Reader<'_>, wire: u8, out: &mut Vec<i64>) -> Result<()> {
    match wire {
        VARINT => {
            out.push(unzigzag(r.varint()?));
            return Ok(());
        }
        LEN => {}
        other => return Err(Error::Content(format!("remote_write histogram: bucket deltas with wire type {other}"))),
    }
    let range = r.len_delimited()?;
    let mut m = Reader { buf: &r.buf[..range.end], pos: range.start };
    while m.pos < range.end {
        out.push(unzigzag(m.varint()?));
    }
    Ok(())
}

/// A repeated `double`, packed (`LEN`) or not.
fn doubles(r: &mut Reader<'_>, wire: u8, out: &mut Vec<f64>) -> Result<()> {
    match wire {
        FIXED64 => {
            out.push(f64::from_bits(r.fixed64()?));
            return Ok(());
        }
        LEN => {}
        other => return Err(Error::Content(format!("remote_write histogram: doubles with wire type {other}"))),
    }
    let range = r.len_delimited()?;
    let bytes = &r.buf[range];
    if !bytes.len().is_multiple_of(8) {
        return Err(Error::Content("remote_write histogram: a packed double list is not a multiple of 8 bytes".into()));
    }
    out.extend(bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, pos: &[(i32, u32)], counts: &[f64]) -> FloatHistogram {
        FloatHistogram {
            schema,
            positive_spans: pos.iter().map(|&(offset, length)| Span { offset, length }).collect(),
            positive_buckets: counts.to_vec(),
            count: counts.iter().sum(),
            ..Default::default()
        }
    }

    #[test]
    fn exponential_bounds_are_powers_of_the_base() {
        // Schema 0: base 2; bucket 1 is (1, 2], bucket 0 is (0.5, 1], bucket -1 (0.25, 0.5].
        assert_eq!(exponential_bound(1, 0), 2.0);
        assert_eq!(exponential_bound(0, 0), 1.0);
        assert_eq!(exponential_bound(-1, 0), 0.5);
        // Schema 1: base √2.
        assert_eq!(exponential_bound(1, 1), std::f64::consts::SQRT_2);
        assert_eq!(exponential_bound(2, 1), 2.0);
        assert_eq!(exponential_bound(-1, 1), std::f64::consts::FRAC_1_SQRT_2);
        // Schema 3: base 2^(1/8); eight buckets per power of two.
        assert_eq!(exponential_bound(8, 3), 2.0);
        assert!((exponential_bound(3, 3) - 2f64.powf(3.0 / 8.0)).abs() < 1e-15);
        // Every table entry is 2^(j/256)/2 to within half a unit in the last place.
        for (j, f) in OCTAVE_FRACTIONS.iter().enumerate() {
            let exact = (j as f64 / 256.0).exp2() / 2.0;
            assert!((f - exact).abs() <= 1.2e-16, "entry {j}: {f} vs {exact}");
        }
        assert_eq!(exponential_bound(-2, 3), 0.8408964152537145);
        // Schema -1: base 4; schema -2: base 16.
        assert_eq!(exponential_bound(1, -1), 4.0);
        assert_eq!(exponential_bound(-1, -2), 1.0 / 16.0);
        // Past the largest double.
        assert_eq!(exponential_bound(1024, 0), f64::MAX);
        assert_eq!(exponential_bound(1025, 0), f64::INFINITY);
    }

    #[test]
    fn buckets_list_negative_zero_then_positive_with_their_bounds() {
        let mut x = h(0, &[(0, 2), (1, 1)], &[1.0, 2.0, 3.0]);
        x.negative_spans = vec![Span { offset: 1, length: 1 }];
        x.negative_buckets = vec![4.0];
        x.zero_threshold = 0.001;
        x.zero_count = 5.0;
        x.count = 15.0;
        x.validate().unwrap();
        // A bucket reaching into the zero bucket is listed from its edge on.
        let mut wide = x.clone();
        wide.zero_threshold = 0.75;
        assert_eq!(wide.buckets()[2].lower, 0.75);
        wide.negative_spans[0].offset = 0;
        assert_eq!(wide.buckets()[0].upper, -0.75);
        let b = x.buckets();
        let got: Vec<(u8, f64, f64, f64)> = b.iter().map(|b| (b.boundary_rule(), b.lower, b.upper, b.count)).collect();
        assert_eq!(
            got,
            vec![
                // negative bucket 1: [-2, -1)
                (1, -2.0, -1.0, 4.0),
                (3, -0.001, 0.001, 5.0),
                // positive buckets 0, 1 and (after a gap of one) 3
                (0, 0.5, 1.0, 1.0),
                (0, 1.0, 2.0, 2.0),
                (0, 4.0, 8.0, 3.0),
            ]
        );
    }

    #[test]
    fn custom_buckets_take_their_bounds_from_custom_values() {
        let mut x = h(CUSTOM_BUCKETS_SCHEMA, &[(0, 3)], &[1.0, 0.0, 2.0]);
        x.custom_values = vec![5.0, 10.0];
        x.validate().unwrap();
        let got: Vec<(u8, f64, f64, f64)> = x.buckets().iter().map(|b| (b.boundary_rule(), b.lower, b.upper, b.count)).collect();
        assert_eq!(got, vec![(3, f64::NEG_INFINITY, 5.0, 1.0), (0, 10.0, f64::INFINITY, 2.0)]);
    }

    #[test]
    fn validation_names_the_problem() {
        let mut x = h(0, &[(0, 2)], &[1.0]);
        assert!(x.validate().unwrap_err().contains("spans need 2 buckets, have 1"));
        x = h(0, &[(0, 1), (-1, 1)], &[1.0, 1.0]);
        assert!(x.validate().unwrap_err().contains("span number 2 with offset -1"));
        x = h(0, &[(0, 1)], &[1.0]);
        x.count = 3.0;
        assert!(x.validate().is_ok(), "a float histogram's count is not checked");
        assert!(x.validate_integer_counts().unwrap_err().contains("1 observations found in buckets, but the Count field is 3"));
        x.sum = f64::NAN;
        assert!(x.validate_integer_counts().is_ok(), "a NaN sum allows a count above the buckets'");
        x.count = 0.5;
        assert!(x.validate_integer_counts().unwrap_err().contains("1 observations found in buckets, but the Count field is 0.5"));
        x = h(9, &[], &[]);
        assert!(x.validate().unwrap_err().contains("invalid schema 9"));
        // Indexes far past any double are refused before any arithmetic on them can overflow.
        x = h(0, &[(i32::MAX, 2)], &[1.0, 1.0]);
        assert!(x.validate().unwrap_err().contains("beyond"), "{:?}", x.validate());
        x = h(0, &[(0, 1), (i32::MAX, 1)], &[1.0, 1.0]);
        assert!(x.validate().unwrap_err().contains("span number 2 reaches bucket index"));
        x = h(CUSTOM_BUCKETS_SCHEMA, &[(0, 1)], &[1.0]);
        x.custom_values = vec![2.0, 1.0];
        assert!(x.validate().unwrap_err().contains("strictly increasing"));
        x = h(0, &[(0, 1)], &[-1.0]);
        x.count = -1.0;
        assert!(x.validate().unwrap_err().contains("observation count of -1"));
    }

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn zz(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    #[test]
    fn integer_deltas_and_float_counts_parse_to_the_same_histogram() {
        // An integer histogram: count 6, sum 10.5, schema 1, zero bucket 1 (threshold 0.001),
        // positive span at 0 of 2 buckets with deltas [2, +1] -> counts [2, 3], reset hint NO,
        // timestamp 1234.
        let mut m = Vec::new();
        m.push(1 << 3);
        varint(&mut m, 6);
        m.push((3 << 3) | 1);
        m.extend(10.5f64.to_le_bytes());
        m.push(4 << 3);
        varint(&mut m, zz(1));
        m.push((5 << 3) | 1);
        m.extend(0.001f64.to_le_bytes());
        m.push(6 << 3);
        varint(&mut m, 1);
        let span = [1 << 3, zz(0) as u8, 2 << 3, 2];
        m.push((11 << 3) | 2);
        m.push(span.len() as u8);
        m.extend(span);
        let mut deltas = Vec::new();
        varint(&mut deltas, zz(2));
        varint(&mut deltas, zz(1));
        m.push((12 << 3) | 2);
        m.push(deltas.len() as u8);
        m.extend(deltas);
        m.push(14 << 3);
        varint(&mut m, 2);
        m.push(15 << 3);
        varint(&mut m, 1234);
        let (t, got) = parse_histogram(&m).unwrap();
        assert_eq!(t, 1234);
        let want = FloatHistogram {
            counter_reset_hint: CounterResetHint::NotCounterReset,
            schema: 1,
            zero_threshold: 0.001,
            zero_count: 1.0,
            count: 6.0,
            sum: 10.5,
            positive_spans: vec![Span { offset: 0, length: 2 }],
            positive_buckets: vec![2.0, 3.0],
            ..Default::default()
        };
        assert_eq!(got, want);

        // The same as a float histogram (count_float, zero_count_float, packed positive_counts).
        let mut f = Vec::new();
        f.push((2 << 3) | 1);
        f.extend(6.0f64.to_le_bytes());
        f.push((3 << 3) | 1);
        f.extend(10.5f64.to_le_bytes());
        f.push(4 << 3);
        varint(&mut f, zz(1));
        f.push((5 << 3) | 1);
        f.extend(0.001f64.to_le_bytes());
        f.push((7 << 3) | 1);
        f.extend(1.0f64.to_le_bytes());
        f.push((11 << 3) | 2);
        f.push(span.len() as u8);
        f.extend(span);
        f.push((13 << 3) | 2);
        f.push(16);
        f.extend(2.0f64.to_le_bytes());
        f.extend(3.0f64.to_le_bytes());
        f.push(14 << 3);
        varint(&mut f, 2);
        f.push(15 << 3);
        varint(&mut f, 1234);
        assert_eq!(parse_histogram(&f).unwrap(), (1234, want));

        // A count that does not match its buckets is refused with the reason.
        let mut wrong = m.clone();
        wrong[1] = 7;
        let e = parse_histogram(&wrong).unwrap_err().to_string();
        assert!(e.contains("6 observations found in buckets, but the Count field is 7"), "{e}");
        // Truncated input is refused, not read past its end.
        assert!(parse_histogram(&m[..m.len() - 1]).is_err());
    }
}
