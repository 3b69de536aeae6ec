//! `aepiot-stream process`: the engine over JSON Lines, for files, pipes and replays.
//!
//! Streaming with bounded memory: one line at a time, and a line longer than the record size limit
//! is never held whole (only the prefix a dead letter keeps). Output lines keep input order.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use crate::core::{Decision, Engine, ErrorKind, Output, RecordError, RecordMeta, Shared, Source};
use crate::kafka::clock::now_ms;

/// Counts of one run, by outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub lines: u64,
    pub success: u64,
    pub cached: u64,
    pub rate_limited: u64,
    pub invalid: u64,
    /// Whitespace-only lines, which are not records.
    pub blank: u64,
    pub urls: u64,
}

impl Summary {
    /// Records processed (every non-blank line).
    pub fn events(&self) -> u64 {
        self.success + self.cached + self.rate_limited + self.invalid
    }

    /// The seed's "Batch processed" line, grown up.
    pub fn report(&self) -> String {
        format!(
            "Batch processed: {}/{} successful (cached: {}, rate_limited: {}, invalid: {}, urls: {}, blank lines skipped: {})",
            self.success,
            self.events(),
            self.cached,
            self.rate_limited,
            self.invalid,
            self.urls,
            self.blank
        )
    }

    fn count(&mut self, output: &Output<'_>) {
        let status = match output {
            Output::Record { status, urls, .. } => {
                self.urls += *urls as u64;
                *status
            }
            Output::Suppressed { status, .. } => *status,
            Output::DeadLetter { .. } => {
                self.invalid += 1;
                return;
            }
        };
        match status {
            Decision::Success => self.success += 1,
            Decision::Cached => self.cached += 1,
            Decision::RateLimited => self.rate_limited += 1,
        }
    }
}

/// The `process` command: JSON Lines from `input` (a path, `-` for stdin) to `output` (`-` for
/// stdout), dead letters to `dead_letter` (stderr when `None`), with the wall clock.
pub fn process_files(
    shared: Arc<Shared>,
    input: &str,
    output: &str,
    dead_letter: Option<&Path>,
) -> anyhow::Result<Summary> {
    let input: Box<dyn io::Read + Send> = match input {
        "-" => Box::new(io::stdin()),
        path => Box::new(
            File::open(path).map_err(|e| anyhow::anyhow!("cannot open input {path}: {e}"))?,
        ),
    };
    let mut dead: Box<dyn Write> = match dead_letter {
        None => Box::new(io::stderr().lock()),
        Some(path) => Box::new(BufWriter::new(File::create(path).map_err(|e| {
            anyhow::anyhow!("cannot create dead-letter file {}: {e}", path.display())
        })?)),
    };
    let output: Box<dyn Write + Send> = match output {
        "-" => Box::new(io::stdout()),
        path => Box::new(
            File::create(path).map_err(|e| anyhow::anyhow!("cannot create output {path}: {e}"))?,
        ),
    };
    // Input and output each move on a thread of their own: the kernel's copies of the events in
    // and of the (larger) URL records out need not hold up the engine's thread (see
    // BENCHMARKS.md, "`process` through the CLI: input and output on threads of their own").
    let summary = thread_io::write::writer(1 << 20, 4, output, |out| -> anyhow::Result<_> {
        thread_io::read::reader(1 << 20, 4, input, |raw| -> anyhow::Result<_> {
            let mut lines = BufReader::with_capacity(1 << 16, raw);
            Ok(process_lines(shared, &mut lines, out, &mut dead, now_ms)?)
        })
    })?;
    dead.flush()?;
    Ok(summary)
}

/// Reads JSON Lines from `input`, writes URL records to `output` and dead letters to `dead`.
/// `now_ms` is the wall clock, asked once per line.
pub fn process_lines(
    shared: Arc<Shared>,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    dead: &mut dyn Write,
    mut now_ms: impl FnMut() -> i64,
) -> io::Result<Summary> {
    let mut engine = Engine::new(shared);
    let limit = engine.max_record_bytes();
    let mut summary = Summary::default();
    let mut line = Vec::with_capacity(4096);
    loop {
        // The common case: the whole line already sits in the reader's buffer, so it is judged
        // there, one copy of every line fewer (see BENCHMARKS.md, "What changed, each with its
        // profile and an A/B").
        let chunk = loop {
            match input.fill_buf() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if chunk.is_empty() {
            break;
        }
        if let Some(end) = memchr::memchr(b'\n', chunk) {
            let text = chunk[..end].strip_suffix(b"\r").unwrap_or(&chunk[..end]);
            let len = text.len();
            judge_line(&mut engine, &mut summary, text, len, output, dead, now_ms())?;
            input.consume(end + 1);
            continue;
        }
        // The line runs past the buffer (or is the last one, without a newline).
        let Some(len) = read_line_bounded(input, &mut line, limit + 1)? else {
            break;
        };
        judge_line(
            &mut engine,
            &mut summary,
            &line,
            len,
            output,
            dead,
            now_ms(),
        )?;
    }
    output.flush()?;
    dead.flush()?;
    Ok(summary)
}

/// One line through the engine: `line` holds the first bytes of a line `len` bytes long (all of
/// it unless it is over the record size limit).
fn judge_line(
    engine: &mut Engine,
    summary: &mut Summary,
    line: &[u8],
    len: usize,
    output: &mut dyn Write,
    dead: &mut dyn Write,
    now_ms: i64,
) -> io::Result<()> {
    summary.lines += 1;
    if len == line.len() && line.iter().all(u8::is_ascii_whitespace) {
        summary.blank += 1;
        return Ok(());
    }
    let meta = RecordMeta {
        record_time_ms: None,
        now_ms,
        source: Some(Source::Line {
            line: summary.lines,
        }),
    };
    let limit = engine.max_record_bytes();
    let out = if len > limit {
        let error = RecordError::new(
            ErrorKind::TooLarge,
            format!("record is {len} bytes, over the limit of {limit} bytes"),
        );
        engine.reject(error, Some(&line[..limit.min(line.len())]), len, &meta)
    } else {
        engine.process(Some(line), &meta)
    };
    summary.count(&out);
    match out {
        Output::Record { json, .. } => write_line(output, json),
        Output::DeadLetter { json, .. } => write_line(dead, json),
        Output::Suppressed { .. } => Ok(()),
    }
}

fn write_line(w: &mut dyn Write, json: &[u8]) -> io::Result<()> {
    w.write_all(json)?;
    w.write_all(b"\n")
}

/// Reads one line into `buf` without its line ending (`\n` or `\r\n`), keeping at most `keep`
/// bytes of it and skipping the rest. Returns the line's full length, or `None` at end of input.
fn read_line_bounded(
    input: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    keep: usize,
) -> io::Result<Option<usize>> {
    buf.clear();
    let mut len = 0usize;
    let mut seen_any = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        seen_any = true;
        let newline = memchr::memchr(b'\n', chunk);
        let data = &chunk[..newline.unwrap_or(chunk.len())];
        let room = keep.saturating_sub(buf.len());
        buf.extend_from_slice(&data[..data.len().min(room)]);
        len += data.len();
        let used = newline.map_or(chunk.len(), |i| i + 1);
        input.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if !seen_any {
        return Ok(None);
    }
    if len == buf.len() && buf.last() == Some(&b'\r') {
        buf.pop();
        len -= 1;
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EngineSettings;

    fn run(input: &str, settings: EngineSettings) -> (String, String, Summary) {
        run_from(&mut input.as_bytes(), settings)
    }

    fn run_from(input: &mut dyn BufRead, settings: EngineSettings) -> (String, String, Summary) {
        let (mut out, mut dead) = (Vec::new(), Vec::new());
        let summary = process_lines(Shared::new(settings), input, &mut out, &mut dead, || {
            1_795_680_000_000
        })
        .unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(dead).unwrap(),
            summary,
        )
    }

    #[test]
    fn good_bad_and_blank_lines() {
        let input = "{\"device_id\":\"a\"}\r\n\nnot json\n  \n{\"device_id\":\"a\"}\n[1]";
        let (out, dead, s) = run(input, EngineSettings::default());
        assert_eq!(out.lines().count(), 1);
        assert_eq!(dead.lines().count(), 2);
        assert_eq!(
            (s.success, s.cached, s.invalid, s.blank, s.lines),
            (1, 1, 2, 2, 6)
        );
        assert!(dead.contains("\"line\":3"));
        assert_eq!(s.report(), "Batch processed: 1/4 successful (cached: 1, rate_limited: 0, invalid: 2, urls: 4, blank lines skipped: 2)");
    }

    #[test]
    fn lines_across_buffer_ends_read_like_whole_ones() {
        // A reader buffer of 7 bytes: most lines end past it (the copying path), some within it.
        let input =
            "{\"device_id\":\"a\"}\r\n\n\r\nnot json\n{}\n  \n{\"device_id\":\"b\"}\r\n[1]\r";
        let small = run_from(
            &mut io::BufReader::with_capacity(7, input.as_bytes()),
            EngineSettings::default(),
        );
        assert_eq!(small, run(input, EngineSettings::default()));
        assert_eq!((small.2.lines, small.2.blank, small.2.success), (8, 3, 2));
        assert_eq!(small.1.lines().count(), 3, "{}", small.1);
    }

    #[test]
    fn over_long_lines_become_bounded_dead_letters() {
        let settings = EngineSettings {
            max_record_bytes: 100,
            max_dead_letter_payload_bytes: 10,
            ..Default::default()
        };
        let big = format!("{{\"device_id\":\"{}\"}}", "x".repeat(10_000));
        let input = format!("{big}\n{{\"device_id\":\"ok\"}}\n");
        let (out, dead, s) = run(&input, settings);
        assert_eq!((s.success, s.invalid), (1, 1));
        assert!(out.contains("\"device_id\":\"ok\""));
        let letter: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
        assert_eq!(letter["error"]["kind"], "too_large");
        assert_eq!(letter["payload_bytes"], big.len());
        assert_eq!(letter["payload_truncated"], true);
        assert_eq!(letter["payload"].as_str().unwrap().len(), 10);
    }

    #[test]
    fn emit_suppressed_writes_every_outcome() {
        let settings = EngineSettings {
            emit_suppressed: true,
            ..Default::default()
        };
        let (out, _, _) = run("{\"device_id\":\"a\"}\n{\"device_id\":\"a\"}\n", settings);
        let statuses: Vec<String> = out
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["status"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(statuses, ["success", "cached"]);
    }
}
