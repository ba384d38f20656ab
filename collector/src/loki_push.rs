//! Decoding Loki push requests (`POST /loki/api/v1/push`): JSON
//! `{"streams":[{"stream":{…},"values":[["<ns>","line"(, {metadata})]]}]}` and the uncompressed
//! protobuf `logproto.PushRequest` (the HTTP handler removes snappy before the WAL).
//!
//! Stream labels become the record's labels; structured metadata (the JSON entry's third
//! element, an object of strings, or `EntryAdapter.structuredMetadata`) becomes the record's
//! attributes; the severity is the `level` (or `detected_level`) stream label when there is one.

use std::collections::BTreeMap;

use pharos_model::{Labels, LogRecord, normalize_attributes};
use prost::Message;
use serde::Deserialize;

use crate::{Error, Result};

#[derive(Deserialize)]
struct JsonPush {
    #[serde(default)]
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<JsonEntry>,
}

/// `["<unix ns>", "line"]`, optionally with a third element: structured metadata, an object of
/// strings (`null` or absent: none).
#[derive(Deserialize)]
struct JsonEntry(String, String, #[serde(default)] Option<BTreeMap<String, String>>);

fn record(labels: &Labels, ts: &str, line: String, attributes: Vec<(String, String)>) -> Result<LogRecord> {
    let timestamp_ns = ts
        .parse::<i64>()
        .map_err(|_| Error::BadInput(format!("invalid Loki timestamp {ts:?}: want nanoseconds")))?;
    let severity = labels.get("level").or_else(|| labels.get("detected_level")).unwrap_or("");
    Ok(LogRecord {
        labels: labels.clone(),
        timestamp_ns,
        body: line,
        severity: severity.to_string(),
        attributes: normalize_attributes(attributes),
    })
}

/// Decodes a JSON push request.
pub fn decode_json(body: &[u8]) -> Result<Vec<LogRecord>> {
    let push: JsonPush =
        serde_json::from_slice(body).map_err(|e| Error::BadInput(format!("invalid Loki push JSON: {e}")))?;
    let mut out = Vec::new();
    for s in push.streams {
        let labels = Labels::from_pairs(s.stream);
        out.reserve(s.values.len());
        for JsonEntry(ts, line, metadata) in s.values {
            let attributes = metadata.map(|m| m.into_iter().collect()).unwrap_or_default();
            out.push(record(&labels, &ts, line, attributes)?);
        }
    }
    Ok(out)
}

#[derive(Clone, PartialEq, Message)]
struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, Message)]
struct StreamAdapter {
    #[prost(string, tag = "1")]
    labels: String,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<EntryAdapter>,
}

#[derive(Clone, PartialEq, Message)]
struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    line: String,
    #[prost(message, repeated, tag = "3")]
    structured_metadata: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`: one structured metadata pair.
#[derive(Clone, PartialEq, Message)]
struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct Timestamp {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// Parses a Prometheus-style label string `{a="b", c="d\"e"}`.
fn parse_labels(s: &str) -> Result<Labels> {
    let err = || Error::BadInput(format!("invalid Loki stream labels {s:?}"));
    let inner = s.trim().strip_prefix('{').and_then(|r| r.strip_suffix('}')).ok_or_else(err)?;
    let mut pairs = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(err)?;
        let name = rest[..eq].trim().to_string();
        rest = rest[eq + 1..].trim_start().strip_prefix('"').ok_or_else(err)?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or_else(err)? {
                (_, '\\') => match chars.next().ok_or_else(err)?.1 {
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        pairs.push((name, value));
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(Labels::from_pairs(pairs))
}

/// Decodes an uncompressed protobuf push request.
pub fn decode_protobuf(body: &[u8]) -> Result<Vec<LogRecord>> {
    let req = PushRequest::decode(body).map_err(|e| Error::BadInput(format!("invalid Loki push protobuf: {e}")))?;
    let mut out = Vec::new();
    for s in req.streams {
        let labels = parse_labels(&s.labels)?;
        for e in s.entries {
            let ts = e.timestamp.map_or(0, |t| t.seconds.saturating_mul(1_000_000_000).saturating_add(t.nanos as i64));
            let attributes = e.structured_metadata.into_iter().map(|p| (p.name, p.value)).collect();
            out.push(record(&labels, &ts.to_string(), e.line, attributes)?);
        }
    }
    Ok(out)
}

/// Encodes records as an uncompressed `logproto.PushRequest`, one stream per record (tests of
/// the WAL path).
#[cfg(test)]
pub(crate) fn encode_protobuf(records: &[LogRecord]) -> Vec<u8> {
    let streams = records
        .iter()
        .map(|r| {
            let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            StreamAdapter {
                labels: format!("{{{}}}", labels.join(", ")),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: r.timestamp_ns.div_euclid(1_000_000_000),
                        nanos: r.timestamp_ns.rem_euclid(1_000_000_000) as i32,
                    }),
                    line: r.body.clone(),
                    structured_metadata: r
                        .attributes
                        .iter()
                        .map(|(k, v)| LabelPairAdapter { name: k.clone(), value: v.clone() })
                        .collect(),
                }],
            }
        })
        .collect();
    PushRequest { streams }.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_push() {
        let got = decode_json(
            br#"{"streams":[{"stream":{"app":"api","level":"warn"},"values":[["1700000000000000001","a"],["2","b",{"trace_id":"x"}]]}]}"#,
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].labels, Labels::from_pairs([("app", "api"), ("level", "warn")]));
        assert_eq!(got[0].timestamp_ns, 1_700_000_000_000_000_001);
        assert_eq!(got[0].severity, "warn");
        assert_eq!((got[1].timestamp_ns, got[1].body.as_str()), (2, "b"));
        assert!(got[0].attributes.is_empty());
        assert_eq!(got[1].attributes, vec![("trace_id".to_string(), "x".to_string())]);
        assert_eq!(got[1].labels, got[0].labels, "metadata does not join the stream labels");
        assert!(decode_json(br#"{"streams":[{"stream":{},"values":[["x","a"]]}]}"#).is_err());
        assert!(decode_json(b"nope").is_err());
    }

    #[test]
    fn protobuf_push() {
        let req = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{app="api", msg="a\"b,c"}"#.into(),
                entries: vec![
                    EntryAdapter {
                        timestamp: Some(Timestamp { seconds: 3, nanos: 5 }),
                        line: "hi".into(),
                        structured_metadata: Vec::new(),
                    },
                    EntryAdapter {
                        timestamp: Some(Timestamp { seconds: 4, nanos: 0 }),
                        line: "with metadata".into(),
                        structured_metadata: vec![
                            LabelPairAdapter { name: "user".into(), value: "ada".into() },
                            LabelPairAdapter { name: "trace_id".into(), value: "t1".into() },
                        ],
                    },
                ],
            }],
        };
        let got = decode_protobuf(&req.encode_to_vec()).unwrap();
        assert_eq!(got[0].labels, Labels::from_pairs([("app", "api"), ("msg", "a\"b,c")]));
        assert_eq!((got[0].timestamp_ns, got[0].body.as_str()), (3_000_000_005, "hi"));
        assert!(got[0].attributes.is_empty());
        let want: Vec<(String, String)> = req.streams[0].entries[1]
            .structured_metadata
            .iter()
            .rev() // sorted by name: trace_id < user
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect();
        assert_eq!(got[1].attributes, want);
        assert_eq!(got[1].labels, got[0].labels);
        assert!(parse_labels("app=x").is_err());
    }
}

#[cfg(test)]
mod entry_shape_tests {
    use super::*;

    #[test]
    fn json_entries_take_two_or_three_elements_and_refuse_others() {
        let ok = br#"{"streams":[{"stream":{"app":"a"},"values":[["1","x"],["2","y",{"trace_id":"t"}],["3","z",{}],["4","w",null]]}]}"#;
        let recs = decode_json(ok).unwrap();
        assert_eq!(
            recs.iter().map(|r| (r.timestamp_ns, r.body.as_str())).collect::<Vec<_>>(),
            vec![(1, "x"), (2, "y"), (3, "z"), (4, "w")]
        );
        assert_eq!(recs.iter().map(|r| r.attributes.len()).collect::<Vec<_>>(), vec![0, 1, 0, 0]);
        for bad in [
            &br#"{"streams":[{"stream":{},"values":[["1"]]}]}"#[..],
            br#"{"streams":[{"stream":{},"values":[[1,"x"]]}]}"#,
            br#"{"streams":[{"stream":{},"values":[["1","x",{},"extra"]]}]}"#,
            br#"{"streams":[{"stream":{},"values":[["soon","x"]]}]}"#,
            br#"{"streams":[{"stream":{},"values":[["1","x",{"n":1}]]}]}"#,
            br#"{"streams":[{"stream":{},"values":[["1","x","meta"]]}]}"#,
        ] {
            let e = decode_json(bad).unwrap_err();
            assert!(matches!(&e, Error::BadInput(m) if m.contains("Loki")), "{e}");
        }
    }
}
