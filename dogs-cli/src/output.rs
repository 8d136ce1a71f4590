//! What commands print: aligned tables and key-value lists for people, JSON for programs.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::exit::{CliError, CliResult, Exit};

/// The longest cell a table shows; longer text is cut, with `…` at its end.
pub const MAX_CELL: usize = 60;

/// Columns aligned under their headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; each cell is put on one line and cut to [`MAX_CELL`] characters.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| cell(c)).collect());
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text: a header line, then one line per row, columns two spaces apart.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, text) in row.iter().enumerate() {
                let width = text.chars().count();
                match widths.get_mut(i) {
                    Some(w) => *w = (*w).max(width),
                    None => widths.push(width),
                }
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, text) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(text);
                } else {
                    let pad = widths[i].saturating_sub(text.chars().count());
                    out.push_str(text);
                    out.push_str(&" ".repeat(pad + 2));
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = line(&self.headers);
        for row in &self.rows {
            out.push('\n');
            out.push_str(&line(row));
        }
        out
    }
}

/// `text` on one line, cut to [`MAX_CELL`] characters.
fn cell(text: &str) -> String {
    let one_line = text.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= MAX_CELL {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(MAX_CELL - 1).collect();
        cut.push('…');
        cut
    }
}

/// Label-value lines, the labels padded to one width.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(label, value)| {
            let pad = width - label.chars().count();
            format!("{label}:{} {value}", " ".repeat(pad))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An instant as `2025-01-31 14:02:07 UTC`.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An optional instant, `-` when there is none.
pub fn maybe_time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".to_owned(), time)
}

/// Optional text, `-` when there is none.
pub fn maybe(text: Option<&str>) -> String {
    text.unwrap_or("-").to_owned()
}

/// A duration as `850ms`, `12.4s`, `3m 20s` or `2h 05m`.
pub fn duration(d: Duration) -> String {
    let millis = d.as_millis();
    let secs = d.as_secs();
    if millis < 1000 {
        format!("{millis}ms")
    } else if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h {:02}m", secs / 3600, (secs / 60) % 60)
    }
}

/// `yes` or `no`.
pub fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_owned()
}

/// Writes `text` and a newline to stdout; a closed stdout (`dogs jobs | head`) is no error.
pub fn print(text: &str) -> CliResult<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::new(
            Exit::Store,
            format!("writing to stdout failed: {e}"),
        )),
    }
}

/// Writes `value` as pretty JSON to stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> CliResult<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::new(Exit::Store, format!("writing JSON failed: {e}")))?;
    print(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let mut table = Table::new(&["ID", "NAME"]);
        table.row(vec!["1".into(), "send-invoice".into()]);
        table.row(vec!["12345".into(), "x\ny".into()]);
        assert_eq!(
            table.render(),
            "ID     NAME\n1      send-invoice\n12345  x y"
        );
    }

    #[test]
    fn long_cells_are_cut() {
        let text = cell(&"x".repeat(100));
        assert_eq!(text.chars().count(), MAX_CELL);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(12_400)), "12.4s");
        assert_eq!(duration(Duration::from_secs(200)), "3m 20s");
        assert_eq!(duration(Duration::from_secs(7500)), "2h 05m");
    }

    #[test]
    fn fields_line_up() {
        assert_eq!(
            fields(&[("id", "7".into()), ("state", "failed".into())]),
            "id:    7\nstate: failed"
        );
    }
}
