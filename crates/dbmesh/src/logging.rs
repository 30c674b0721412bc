//! The proxy's log on stderr: `text` (tracing's human format) or `json` (one object per
//! event), one event per line either way, so line-based collectors never split an event, and
//! colours only when stderr is a terminal. `RUST_LOG` filters (default `info`).

use std::io::{IsTerminal, Write};

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, one line per event; newlines inside a field are written as `\n`.
    Text,
    /// One JSON object per line: timestamp, level, target, message and the event's fields.
    Json,
}

/// Installs the process's log subscriber.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(EventLine::default)
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init(),
    }
}

/// One text event, collected whole and written as one line when dropped (the formatter
/// writes each event to its own writer): a field holding newlines (a rule file's list of
/// problems, a backend's message) would otherwise spread the event over several lines.
#[derive(Default)]
struct EventLine {
    text: Vec<u8>,
}

impl Write for EventLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventLine {
    fn drop(&mut self) {
        let line = one_line(&self.text);
        // Nowhere to report a failed write to the log.
        let _ = std::io::stderr().lock().write_all(&line);
    }
}

/// `text` with its interior line breaks written as `\n` / `\r`, ending in one newline.
fn one_line(text: &[u8]) -> Vec<u8> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut line = Vec::with_capacity(body.len() + 8);
    for &b in body {
        match b {
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            _ => line.push(b),
        }
    }
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_line() {
        assert_eq!(one_line(b"a\nb\r\nc\n"), b"a\\nb\\r\\nc\n");
        assert_eq!(one_line(b"plain"), b"plain\n");
    }
}
