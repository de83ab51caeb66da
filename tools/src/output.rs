//! Rendering: every command returns a report that is both `Serialize` (for `--output json`) and
//! [`Render`] (for the aligned text tables an operator reads). JSON is one document per command,
//! so scripts can pipe it to `jq`; tables leave `-` where a value is unknown.

use serde::Serialize;

/// `--output` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A report that can print itself as text.
pub trait Render: Serialize {
    /// The text form, ending in a newline.
    fn render_table(&self) -> String;
}

/// Renders `report` in `format`.
pub fn render<R: Render>(report: &R, format: Format) -> String {
    match format {
        Format::Table => report.render_table(),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report)
                .expect("reports hold only strings, numbers, bools and lists");
            s.push('\n');
            s
        }
    }
}

/// An aligned text table: columns as wide as their widest cell, two spaces between.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per header.
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.headers.len(), "row width = header width");
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines; trailing spaces are trimmed so output diffs cleanly.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut s = String::new();
            for (i, (c, w)) in line.iter().zip(&widths).enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                s.push_str(c);
                s.extend(std::iter::repeat_n(' ', w - c.chars().count()));
            }
            out.push_str(s.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `Some(v)` as text, `None` as `-`.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A list of numbers as `1,2,3`.
pub fn list<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A simple one-line outcome (`topic create`, `group delete`, ...).
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub ok: bool,
    pub message: String,
}

impl Render for Outcome {
    fn render_table(&self) -> String {
        format!("{}\n", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_trims() {
        let mut t = Table::new(&["TOPIC", "P", "LAG"]);
        t.row(vec!["orders".into(), "0".into(), "12".into()]);
        t.row(vec!["a".into(), "10".into(), "-".into()]);
        assert_eq!(
            t.render(),
            "TOPIC   P   LAG\norders  0   12\na       10  -\n"
        );
    }

    #[test]
    fn table_counts_characters_not_bytes() {
        let mut t = Table::new(&["K", "V"]);
        t.row(vec!["é".into(), "x".into()]);
        assert_eq!(t.render(), "K  V\né  x\n");
    }

    #[test]
    #[should_panic(expected = "row width")]
    fn table_rejects_ragged_rows() {
        Table::new(&["A", "B"]).row(vec!["1".into()]);
    }

    #[test]
    fn helpers_format_unknowns_and_lists() {
        assert_eq!(opt(None::<i64>), "-");
        assert_eq!(opt(Some(5)), "5");
        assert_eq!(list(&[1, 2, 3]), "1,2,3");
        assert_eq!(list::<i32>(&[]), "");
    }

    #[test]
    fn json_is_one_document() {
        let o = Outcome {
            ok: true,
            message: "done".into(),
        };
        let s = render(&o, Format::Json);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(render(&o, Format::Table), "done\n");
    }
}
