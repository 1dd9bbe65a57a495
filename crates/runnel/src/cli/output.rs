//! Presentation for the client commands: aligned tables and key/value blocks for people,
//! pretty JSON for scripts, a progress line on stderr (only when stderr is a terminal), and
//! recognising a closed stdout (`runnel consume … | head`) as a normal end. It never talks
//! to a broker.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

/// A table with a header row; columns are padded to their widest cell.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len(), "a row has one cell per column");
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (c, w)) in r.iter().zip(&widths).enumerate() {
                if i + 1 == r.len() {
                    line.push_str(c);
                } else {
                    line.push_str(&format!("{c:<w$}  "));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the keys aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{:<w$} {v}\n", format!("{k}:"))).collect()
}

/// Prints `value` as JSON when `json`, else the human text `human()` builds.
pub fn emit<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, value)?;
        out.write_all(b"\n")?;
    } else {
        out.write_all(human(value).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// Whether the error is stdout having been closed by its reader.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// A single self-overwriting status line on stderr, shown only on a terminal and at
/// most every 100 ms.
pub struct Progress {
    enabled: bool,
    last: Option<Instant>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress { enabled: std::io::stderr().is_terminal(), last: None }
    }

    pub fn update(&mut self, msg: impl FnOnce() -> String) {
        if !self.enabled || self.last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
            return;
        }
        self.last = Some(Instant::now());
        eprint!("\r\x1b[2K{}", msg());
    }

    pub fn finish(&mut self) {
        if self.enabled && self.last.is_some() {
            eprint!("\r\x1b[2K");
            self.last = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["NAME", "N"]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer".into(), "22".into()]);
        assert_eq!(t.render(), "NAME    N\na       1\nlonger  22\n");
    }

    #[test]
    fn fields_align_keys() {
        assert_eq!(fields(&[("id", "x".into()), ("brokers", "1".into())]), "id:      x\nbrokers: 1\n");
    }
}
