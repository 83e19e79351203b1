//! Reading a timeline file back: the header line, then one sample per line. A torn last line
//! (a write cut short by a kill) is tolerated; any other bad line is an error naming file and line.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::error::{io_err, MonitorError};
use super::model::{Sample, Timeline, TimelineHeader, TIMELINE_SCHEMA};

/// Reads a timeline back; a torn last line is skipped (see [`read_timeline_detailed`]) and
/// logged.
pub fn read_timeline(path: &Path) -> Result<(TimelineHeader, Vec<Sample>), MonitorError> {
    let t = read_timeline_detailed(path)?;
    if let Some(line) = &t.torn_last_line {
        tracing::warn!(
            target: "rdbench::monitor",
            "{}: ignoring a torn last line ({} bytes)",
            path.display(),
            line.len()
        );
    }
    Ok((t.header, t.samples))
}

/// Reads a timeline back, reporting a torn last line instead of failing on it. Any other
/// unparseable line is an error.
pub fn read_timeline_detailed(path: &Path) -> Result<Timeline, MonitorError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
        let bytes = line.map_err(io_err(path))?;
        // A torn write can cut a UTF-8 sequence; keep it as text for the parse to reject.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if !text.trim().is_empty() {
            lines.push((i + 1, text));
        }
    }
    let Some((_, first)) = lines.first() else {
        return Err(MonitorError::BadTimeline {
            path: path.into(),
            reason: "empty file".into(),
        });
    };
    let header: TimelineHeader =
        serde_json::from_str(first).map_err(|e| MonitorError::BadTimeline {
            path: path.into(),
            reason: format!("bad header line: {e}"),
        })?;
    if header.schema != TIMELINE_SCHEMA {
        return Err(MonitorError::BadTimeline {
            path: path.into(),
            reason: format!("schema {:?}, expected {TIMELINE_SCHEMA:?}", header.schema),
        });
    }
    let n = lines.len();
    let mut samples = Vec::with_capacity(n - 1);
    let mut torn_last_line = None;
    for (k, (line_no, text)) in lines.into_iter().enumerate().skip(1) {
        match serde_json::from_str::<Sample>(&text) {
            Ok(s) => samples.push(s),
            Err(_) if k == n - 1 => torn_last_line = Some(text),
            Err(source) => {
                return Err(MonitorError::Json {
                    path: path.into(),
                    line: line_no,
                    source,
                })
            }
        }
    }
    Ok(Timeline {
        header,
        samples,
        torn_last_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::time::Duration;

    use crate::monitor::{MonitorConfig, Source, TimelineConfig};

    #[test]
    fn torn_last_line_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let (h, path) = crate::monitor::sampler::start_fast(dir.path());
        std::thread::sleep(Duration::from_millis(50));
        h.stop().unwrap();
        let (_, whole) = read_timeline(&path).unwrap();
        // Append half a line, as a kill mid-write would.
        let full = serde_json::to_string(&whole[0]).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&full.as_bytes()[..full.len() / 2]).unwrap();
        drop(f);
        let t = read_timeline_detailed(&path).unwrap();
        assert_eq!(t.samples, whole);
        assert!(t.torn_last_line.is_some());
        assert_eq!(read_timeline(&path).unwrap().1.len(), whole.len());
        // A bad line in the middle is an error naming the file and line.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(2, "{not json");
        std::fs::write(&path, lines.join("\n")).unwrap();
        let e = read_timeline(&path).unwrap_err();
        assert!(matches!(e, MonitorError::Json { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("t.jsonl"), "{e}");
    }

    #[test]
    fn bad_timelines_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.jsonl");
        let e = read_timeline(&missing).unwrap_err();
        assert!(
            matches!(e, MonitorError::Io { .. }) && e.to_string().contains("none.jsonl"),
            "{e}"
        );
        let empty = dir.path().join("empty.jsonl");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(
            read_timeline(&empty),
            Err(MonitorError::BadTimeline { .. })
        ));
        let other = dir.path().join("other.jsonl");
        let mut header = serde_json::to_value(TimelineHeader {
            schema: TIMELINE_SCHEMA.into(),
            source: Source::Proc {
                note: "no NVIDIA GPU: test".into(),
            },
            config: TimelineConfig::from(&MonitorConfig::default()),
            start_time: "2026-01-01T00:00:00Z".into(),
            start_unix_ms: 0,
            monitor_pid: 1,
            hostname: None,
        })
        .unwrap();
        header["schema"] = "other/2".into();
        std::fs::write(&other, format!("{header}\n")).unwrap();
        let e = read_timeline(&other).unwrap_err();
        assert!(e.to_string().contains("other/2"), "{e}");
    }
}
