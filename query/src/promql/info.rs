//! `info(v, [selector])`: adds to each series of `v` the data labels of the info series (by
//! default `target_info`) that share its identifying labels `instance` and `job`, as
//! Prometheus' experimental `info` function does.
//!
//! The info series are fetched up front with the call's selector (see
//! [`super::selector::Fetched`]); at each step they are taken as instant vectors (lookback and
//! staleness as for any selector), keeping each sample's timestamp to pick the newest of two
//! info series with one identity.

use std::collections::{BTreeMap, HashMap, HashSet};

use pharos_model::{Labels, METRIC_NAME};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Call, Expr};

use super::binary::go_labels;
use super::eval::{Evaluator, check_unique};
use super::value::Sample;
use crate::error::{Error, Result};

/// The info metric joined when the call names none.
const TARGET_INFO: &str = "target_info";

/// The labels that identify the target an info series describes.
const IDENTIFYING: [&str; 2] = ["instance", "job"];

/// The matchers of the call's second argument, a label selector; `None` without one.
fn selector_matchers(c: &Call) -> Result<Option<Vec<Matcher>>> {
    let Some(arg) = c.args.args.get(1) else {
        return Ok(None);
    };
    let Expr::VectorSelector(vs) = arg.as_ref() else {
        return Err(Error::BadData(format!(
            "expected label selectors as the second argument to \"info\" function, got {arg}"
        )));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(Error::BadData("the label selector of info() cannot have \"or\" alternatives".into()));
    }
    let mut matchers = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name {
        matchers.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
    }
    Ok(Some(matchers))
}

/// The matchers that select the info series of call `c`: its selector's, with
/// `__name__="target_info"` unless one of them is on the name.
pub fn info_matchers(c: &Call) -> Result<Vec<Matcher>> {
    let mut matchers = selector_matchers(c)?.unwrap_or_default();
    if !matchers.iter().any(|m| m.name == METRIC_NAME) {
        matchers.insert(0, Matcher::new(MatchOp::Equal, METRIC_NAME, TARGET_INFO));
    }
    Ok(matchers)
}

/// Evaluates `info(…)` at `t`.
pub fn eval(ev: &Evaluator, c: &Call, t: i64) -> Result<Vec<Sample>> {
    let base_expr = c.args.args.first().ok_or_else(|| Error::BadData("info() needs an argument".into()))?;
    let t = ev.fetched.info_time(c, t)?;
    let base = ev.eval_vector(base_expr, t)?;
    let selector = selector_matchers(c)?;
    // Base series whose name every name matcher accepts are info series themselves: left as
    // they are. Without a selector that is `target_info`; with one, its name matchers (none:
    // nothing is left out).
    let name_matchers: Vec<Matcher> = match &selector {
        None => vec![Matcher::new(MatchOp::Equal, METRIC_NAME, TARGET_INFO)],
        Some(ms) => ms.iter().filter(|m| m.name == METRIC_NAME).cloned().collect(),
    };
    let is_info = |labels: &Labels| {
        !name_matchers.is_empty() && {
            let name = labels.metric_name().unwrap_or("");
            name_matchers.iter().all(|m| m.is_match(name))
        }
    };
    // Data label matchers by label name; the name matchers only choose the info metrics.
    let mut data_matchers: BTreeMap<&str, Vec<&Matcher>> = BTreeMap::new();
    for m in selector.iter().flatten().filter(|m| m.name != METRIC_NAME) {
        data_matchers.entry(m.name.as_str()).or_default().push(m);
    }

    // The values of the identifying labels among the series to enrich: an info series is
    // joined only if it has one of them for each identifying label some series has.
    let mut wanted: HashMap<&str, HashSet<&str>> = HashMap::new();
    for s in base.iter().filter(|s| !is_info(&s.labels)) {
        for name in IDENTIFYING {
            if let Some(v) = s.labels.get(name) {
                wanted.entry(name).or_default().insert(v);
            }
        }
    }
    let candidates = if wanted.is_empty() { Vec::new() } else { ev.fetched.info_series(c, t)? };
    // The newest info series per identity (metric name and identifying labels).
    let mut by_identity: HashMap<Identity<'_>, &Sample> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    for s in &candidates {
        let joinable = wanted.iter().all(|(name, values)| s.labels.get(name).is_some_and(|v| values.contains(v)));
        if !joinable {
            continue;
        }
        let name = s.labels.metric_name().unwrap_or("");
        if !names.contains(&name) {
            names.push(name);
        }
        // The value is the sample's timestamp (ms).
        match by_identity.entry(identity(name, &s.labels)) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(s);
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let existing = *e.get();
                if existing.value == s.value {
                    return Err(Error::Execution(format!(
                        "found duplicate series for info metric: existing {} @ {}, new {} @ {}",
                        go_labels(&existing.labels),
                        existing.value as i64,
                        go_labels(&s.labels),
                        s.value as i64
                    )));
                }
                if existing.value < s.value {
                    e.insert(s);
                }
            }
        }
    }

    let mut out = Vec::with_capacity(base.len());
    for s in base {
        if is_info(&s.labels) {
            out.push(s);
            continue;
        }
        let mut added: BTreeMap<&str, &str> = BTreeMap::new();
        let mut joined = false;
        for name in &names {
            let Some(info) = by_identity.get(&identity(name, &s.labels)) else {
                continue;
            };
            joined = true;
            for (label, value) in info.labels.iter() {
                if label == METRIC_NAME || (!data_matchers.is_empty() && !data_matchers.contains_key(label)) {
                    continue;
                }
                if added.get(label).is_some_and(|v| *v != value) {
                    return Err(Error::Execution(format!("conflicting label: {label}")));
                }
                if s.labels.get(label).is_none() {
                    added.insert(label, value);
                }
            }
        }
        // Without an info series, a series is kept only if every data label matcher accepts
        // the label's absence.
        if !joined && data_matchers.values().flatten().any(|m| !m.is_match("")) {
            continue;
        }
        let labels = if added.is_empty() {
            s.labels
        } else {
            s.labels.merged_under(&Labels::from_pairs(added))
        };
        out.push(Sample { labels, value: s.value });
    }
    check_unique(out)
}

/// An info series' identity as a base series sees it: the info metric's name and the values
/// of the identifying labels the series has.
#[derive(PartialEq, Eq, Hash)]
struct Identity<'a>(&'a str, [Option<&'a str>; 2]);

fn identity<'a>(name: &'a str, labels: &'a Labels) -> Identity<'a> {
    Identity(name, IDENTIFYING.map(|l| labels.get(l)))
}
