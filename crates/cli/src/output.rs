//! What the CLI prints and asks on the terminal: JSON, tables with colour
//! when the terminal takes it, human durations, and prompts.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};

/// The console's, so both show a duration alike.
pub(crate) use bulwark_server::console::human_duration;

pub(crate) fn prompt_line(prompt: &str) -> Result<String> {
    let mut stderr = std::io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading from the terminal")?;
    Ok(line.trim().to_owned())
}

/// `--json`: the server's reply as the API types it, pretty-printed.
pub(crate) fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// An optional value as a table cell shows it: `-` when absent.
pub(crate) fn or_dash<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Whether to colour stdout: a terminal, and NO_COLOR unset.
pub(crate) fn use_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A table cell: its text, and an optional ANSI colour applied after padding
/// so that alignment counts only visible characters.
pub(crate) struct Cell {
    pub(crate) text: String,
    pub(crate) colour: Option<&'static str>,
}

/// Table text comes from agents and the server, both untrusted: a control
/// character (an ANSI escape that recolours or rewrites the terminal, a
/// carriage return that hides a cell) is shown as U+FFFD.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Many lines of agent text (a job's output) for a terminal: as
/// [`printable`], but line feeds and tabs stay. An escape sequence shows
/// as U+FFFD and its visible rest, never acts on the terminal.
pub(crate) fn terminal_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self {
            text: printable(&text),
            colour: None,
        }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Self {
            text: printable(text),
            colour: None,
        }
    }
}

pub(crate) const GREEN: &str = "\x1b[32m";

pub(crate) const RED: &str = "\x1b[31m";

pub(crate) const RESET: &str = "\x1b[0m";

pub(crate) fn render_table(headers: &[&str], rows: &[Vec<Cell>], colour: bool) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.text.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<Cell> = headers.iter().map(|h| Cell::from(*h)).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            let last = i + 1 == row.len();
            let padded = if last {
                cell.text.clone()
            } else {
                format!("{:<width$}  ", cell.text)
            };
            match (colour, cell.colour) {
                (true, Some(code)) => {
                    let (text, pad) = padded.split_at(cell.text.len());
                    let _ = write!(line, "{code}{text}{RESET}{pad}");
                }
                _ => line.push_str(&padded),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(crate) fn indented_table(out: &mut String, headers: &[&str], rows: &[Vec<Cell>]) {
    if rows.is_empty() {
        let _ = writeln!(out, "  (none)");
        return;
    }
    for line in render_table(headers, rows, false).lines() {
        let _ = writeln!(out, "  {line}");
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_text_cannot_drive_the_terminal() {
        assert_eq!(
            terminal_text("ok\n\x1b[2J\x1b]0;pwned\x07\rline\tend"),
            "ok\n\u{fffd}[2J\u{fffd}]0;pwned\u{fffd}\u{fffd}line\tend"
        );
    }

    #[test]
    fn tables_align_on_visible_text() {
        let rows = vec![
            vec![
                Cell::from("a"),
                Cell {
                    text: "online".into(),
                    colour: Some(GREEN),
                },
                Cell::from("x"),
            ],
            vec![
                Cell::from("long-name"),
                Cell {
                    text: "offline".into(),
                    colour: Some(RED),
                },
                Cell::from("y"),
            ],
        ];
        let plain = render_table(&["NAME", "STATUS", "Z"], &rows, false);
        assert_eq!(
            plain,
            "NAME       STATUS   Z\na          online   x\nlong-name  offline  y\n"
        );
        let coloured = render_table(&["NAME", "STATUS", "Z"], &rows, true);
        assert_eq!(
            coloured
                .replace(GREEN, "")
                .replace(RED, "")
                .replace(RESET, ""),
            plain
        );
    }
}
