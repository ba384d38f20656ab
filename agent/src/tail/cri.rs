//! Container log line formats written by the kubelet's runtimes, and merging of partial lines.
//!
//! - CRI (containerd, CRI-O): `<RFC3339Nano time> <stdout|stderr> <P|F> <message>`; `P` marks a
//!   fragment of a long line continued by the next line, `F` the last (or only) fragment.
//! - docker json-file: `{"log":"message\n","stream":"stdout","time":"…"}`; a `log` without the
//!   trailing newline is a fragment.

use serde::Deserialize;

/// One physical line of a container log file, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// Nanoseconds since the epoch, from the runtime's timestamp.
    pub timestamp_ns: i64,
    /// `stdout` or `stderr`.
    pub stream: Stream,
    /// True when the message continues on the next line.
    pub partial: bool,
    /// The message (fragment), without the line terminator.
    pub message: std::borrow::Cow<'a, str>,
}

/// The output stream a line was written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn parse(s: &str) -> Option<Stream> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

fn parse_time_ns(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok()?.timestamp_nanos_opt()
}

/// Decodes one line (without its `\n`) in CRI or docker json-file format; `None` when it is
/// neither.
pub fn parse_line(line: &str) -> Option<LogLine<'_>> {
    if line.starts_with('{') {
        return parse_docker_json(line);
    }
    let mut parts = line.splitn(4, ' ');
    let timestamp_ns = parse_time_ns(parts.next()?)?;
    let stream = Stream::parse(parts.next()?)?;
    // The tag may carry more `:`-separated flags in the future; the first one is P or F.
    let partial = match parts.next()?.split(':').next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    let message = parts.next().unwrap_or("");
    Some(LogLine { timestamp_ns, stream, partial, message: message.into() })
}

#[derive(Deserialize)]
struct DockerLine {
    log: String,
    stream: String,
    time: String,
}

fn parse_docker_json(line: &str) -> Option<LogLine<'static>> {
    let d: DockerLine = serde_json::from_str(line).ok()?;
    let timestamp_ns = parse_time_ns(&d.time)?;
    let stream = Stream::parse(&d.stream)?;
    let (message, partial) = match d.log.strip_suffix('\n') {
        Some(m) => (m.to_string(), false),
        None => (d.log, true),
    };
    Some(LogLine { timestamp_ns, stream, partial, message: message.into() })
}

/// A complete log entry: partial fragments joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Timestamp of the first fragment, ns since the epoch.
    pub timestamp_ns: i64,
    /// Output stream; `None` for lines in no known format (kept verbatim).
    pub stream: Option<Stream>,
    /// The whole message.
    pub message: String,
}

/// Joins `P` fragments until their `F` line.
#[derive(Default, Debug)]
pub struct PartialMerger {
    pending: Option<Entry>,
}

impl PartialMerger {
    /// Feeds one decoded line; returns the entry it completes, if any.
    pub fn push(&mut self, line: LogLine<'_>) -> Option<Entry> {
        let entry = self.pending.get_or_insert_with(|| Entry {
            timestamp_ns: line.timestamp_ns,
            stream: Some(line.stream),
            message: String::new(),
        });
        entry.message.push_str(&line.message);
        if line.partial { None } else { self.pending.take() }
    }

    /// True while fragments wait for their final line.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Gives up waiting and returns the fragments joined so far.
    pub fn take_pending(&mut self) -> Option<Entry> {
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines() {
        let l = parse_line("2024-05-01T12:00:00.123456789Z stderr F boom: it failed ").unwrap();
        assert_eq!(l.timestamp_ns, 1_714_564_800_123_456_789);
        assert_eq!(l.stream, Stream::Stderr);
        assert!(!l.partial);
        assert_eq!(l.message, "boom: it failed ");
        let empty = parse_line("2024-05-01T12:00:00+02:00 stdout F").unwrap();
        assert_eq!(empty.message, "");
        assert_eq!(empty.timestamp_ns, 1_714_557_600_000_000_000);
        assert!(parse_line("2024-05-01T12:00:00Z stdlog F x").is_none());
        assert!(parse_line("not a time stdout F x").is_none());
        assert!(parse_line("2024-05-01T12:00:00Z stdout X x").is_none());
    }

    #[test]
    fn partial_lines_merge_until_final() {
        let mut m = PartialMerger::default();
        assert_eq!(m.push(parse_line("2024-05-01T12:00:00Z stdout P hello ").unwrap()), None);
        assert_eq!(m.push(parse_line("2024-05-01T12:00:01Z stdout P big ").unwrap()), None);
        assert!(m.has_pending());
        let e = m.push(parse_line("2024-05-01T12:00:02Z stdout F world").unwrap()).unwrap();
        assert_eq!(e.message, "hello big world");
        assert_eq!(e.timestamp_ns, 1_714_564_800_000_000_000, "first fragment's time");
        assert!(!m.has_pending());
        let single = m.push(parse_line("2024-05-01T12:00:03Z stdout F one").unwrap()).unwrap();
        assert_eq!(single.message, "one");
    }

    #[test]
    fn docker_json_lines() {
        let l = parse_line(r#"{"log":"line one\n","stream":"stdout","time":"2024-05-01T12:00:00.5Z"}"#).unwrap();
        assert_eq!((l.message.as_ref(), l.partial, l.timestamp_ns), ("line one", false, 1_714_564_800_500_000_000));
        let p = parse_line(r#"{"log":"frag","stream":"stderr","time":"2024-05-01T12:00:00Z"}"#).unwrap();
        assert!(p.partial);
        assert!(parse_line(r#"{"msg":"app json"}"#).is_none());
    }
}
