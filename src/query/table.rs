//! A result table (named columns, typed cells) and its three renderings: an aligned text table for
//! the terminal, CSV (RFC 4180, UTF-8, spreadsheet-safe text) and JSON (an array of objects).
use std::borrow::Cow;
use std::io::Write;

use rusqlite::types::ValueRef;

/// One value of a result, typed as SQLite stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(usize),
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    /// A real that is `Null` when not finite.
    pub fn real(v: f64) -> Cell {
        if v.is_finite() {
            Cell::Real(v)
        } else {
            Cell::Null
        }
    }

    pub fn opt_real(v: Option<f64>) -> Cell {
        v.map_or(Cell::Null, Cell::real)
    }

    /// The value as a number (integers included), `None` for NULL, text and blobs.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Real(v) => Some(*v),
            _ => None,
        }
    }

    /// The value as text, `None` for anything else.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Cell::Text(s) => Some(s),
            _ => None,
        }
    }

    fn from_sql(v: ValueRef<'_>) -> Cell {
        match v {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Int(i),
            ValueRef::Real(r) => Cell::real(r),
            ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Cell::Blob(b.len()),
        }
    }

    fn is_number(&self) -> bool {
        matches!(self, Cell::Int(_) | Cell::Real(_))
    }

    /// Full precision, for files: the shortest text that reads back as the same number.
    fn plain(&self) -> Cow<'_, str> {
        match self {
            Cell::Null => Cow::Borrowed(""),
            Cell::Int(i) => Cow::Owned(i.to_string()),
            Cell::Real(r) => Cow::Owned(r.to_string()),
            Cell::Text(s) => Cow::Borrowed(s),
            Cell::Blob(n) => Cow::Owned(format!("<blob of {n} bytes>")),
        }
    }

    /// Rounded, for the terminal.
    fn short(&self) -> Cow<'_, str> {
        match self {
            Cell::Real(r) if r.abs() >= 1e5 || (*r != 0.0 && r.abs() < 1e-3) => {
                Cow::Owned(format!("{r:.3e}"))
            }
            Cell::Real(r) => Cow::Owned(format!("{r:.3}")),
            Cell::Null => Cow::Borrowed("-"),
            other => other.plain(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Int(i) => (*i).into(),
            Cell::Real(r) => {
                serde_json::Number::from_f64(*r).map_or(serde_json::Value::Null, Into::into)
            }
            Cell::Text(s) => s.clone().into(),
            Cell::Blob(_) => self.plain().into_owned().into(),
        }
    }
}

/// How a table is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for the terminal (numbers rounded).
    Table,
    /// RFC 4180 CSV with a header row (full precision; spreadsheet-safe text).
    Csv,
    /// A JSON array of objects, one per row (full precision).
    Json,
}

/// Named columns and rows of cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = S>) -> Table {
        Table {
            columns: columns.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Runs one SQL statement and collects its rows.
    pub fn query(
        conn: &rusqlite::Connection,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> rusqlite::Result<Table> {
        let mut stmt = conn.prepare(sql)?;
        Table::from_statement(&mut stmt, params)
    }

    pub fn from_statement(
        stmt: &mut rusqlite::Statement<'_>,
        params: impl rusqlite::Params,
    ) -> rusqlite::Result<Table> {
        let columns: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let n = columns.len();
        let mut rows = Vec::new();
        let mut it = stmt.query(params)?;
        while let Some(r) = it.next()? {
            rows.push(
                (0..n)
                    .map(|i| r.get_ref(i).map(Cell::from_sql))
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            );
        }
        Ok(Table { columns, rows })
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// The index of a column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    pub fn write(&self, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
        match format {
            Format::Table => self.write_aligned(out),
            Format::Csv => self.write_csv(out),
            Format::Json => {
                serde_json::to_writer_pretty(&mut *out, &self.to_json())?;
                writeln!(out)
            }
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        self.rows
            .iter()
            .map(|r| {
                self.columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| (c.clone(), v.json()))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            })
            .collect::<Vec<serde_json::Value>>()
            .into()
    }

    /// Aligned columns: numbers right-aligned, text left-aligned, long text cut at 60 characters
    /// (except in the last column, which may run on).
    pub fn write_aligned(&self, out: &mut dyn Write) -> std::io::Result<()> {
        const MAX: usize = 60;
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let last = r.len().saturating_sub(1);
                r.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let s = c.short().replace(['\n', '\r', '\t'], " ");
                        if i < last && s.chars().count() > MAX {
                            let head: String = s.chars().take(MAX - 1).collect();
                            format!("{head}…")
                        } else {
                            s
                        }
                    })
                    .collect()
            })
            .collect();
        let width = |i: usize| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([self.columns[i].chars().count()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.columns.len()).map(width).collect();
        let numeric: Vec<bool> = (0..self.columns.len())
            .map(|i| {
                self.rows.iter().any(|r| r[i].is_number())
                    && self
                        .rows
                        .iter()
                        .all(|r| r[i].is_number() || r[i] == Cell::Null)
            })
            .collect();
        let line = |vals: &[String]| {
            vals.iter()
                .enumerate()
                .map(|(i, v)| {
                    let pad = widths[i].saturating_sub(v.chars().count());
                    if numeric[i] {
                        format!("{}{v}", " ".repeat(pad))
                    } else {
                        format!("{v}{}", " ".repeat(pad))
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        writeln!(out, "{}", line(&self.columns))?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        writeln!(out, "{}", rule.join("  "))?;
        for r in &cells {
            writeln!(out, "{}", line(r))?;
        }
        if self.rows.is_empty() {
            writeln!(out, "(no rows)")?;
        }
        Ok(())
    }

    /// RFC 4180 CSV: header row, CRLF-free `\n` line ends, fields quoted when needed; text cells made
    /// spreadsheet-safe with [`spreadsheet_safe`], numbers written as they are.
    pub fn write_csv(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(out);
        w.write_record(
            self.columns
                .iter()
                .map(|c| spreadsheet_safe(c).into_owned()),
        )
        .map_err(std::io::Error::other)?;
        for r in &self.rows {
            w.write_record(r.iter().map(|c| match c {
                Cell::Text(s) => spreadsheet_safe(s).into_owned(),
                other => other.plain().into_owned(),
            }))
            .map_err(std::io::Error::other)?;
        }
        w.flush()
    }
}

/// OWASP's CSV-injection advice: a text cell beginning with `=`, `+`, `-`, `@`, a tab or a carriage
/// return would be read as a formula by a spreadsheet, so it gets a leading `'` (shown as text, not
/// evaluated). Only text cells go through this; numbers are written as numbers.
pub fn spreadsheet_safe(s: &str) -> Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{s}")),
        _ => Cow::Borrowed(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(["path", "label", "value", "n"]);
        t.push(vec![
            Cell::text("a,b \"quoted\".jpg"),
            Cell::text("=HYPERLINK(\"x\")"),
            Cell::Real(-0.25),
            Cell::Int(-3),
        ]);
        t.push(vec![
            Cell::text("plain.png"),
            Cell::text("yes"),
            Cell::Null,
            Cell::Int(7),
        ]);
        t
    }

    #[test]
    fn csv_round_trip_and_formula_guard() {
        let mut buf = Vec::new();
        sample().write_csv(&mut buf).unwrap();
        let mut r = csv::Reader::from_reader(buf.as_slice());
        assert_eq!(r.headers().unwrap(), vec!["path", "label", "value", "n"]);
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        assert_eq!(
            &rows[0][0], "a,b \"quoted\".jpg",
            "commas and quotes survive"
        );
        assert_eq!(&rows[0][1], "'=HYPERLINK(\"x\")", "formula text is defused");
        assert_eq!(&rows[0][2], "-0.25", "negative numbers stay numbers");
        assert_eq!(&rows[0][3], "-3");
        assert_eq!(&rows[1][2], "", "NULL is an empty field");
    }

    #[test]
    fn spreadsheet_safe_prefixes_only_formula_starts() {
        for s in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(spreadsheet_safe(s).starts_with('\''), "{s:?}");
        }
        for s in ["no", "1-2", "a=b", "", "'quoted"] {
            assert_eq!(spreadsheet_safe(s), s);
        }
    }

    #[test]
    fn json_keeps_types() {
        let v = sample().to_json();
        assert_eq!(v[0]["value"], serde_json::json!(-0.25));
        assert_eq!(v[0]["n"], serde_json::json!(-3));
        assert_eq!(v[1]["value"], serde_json::Value::Null);
        assert_eq!(v[0]["label"], serde_json::json!("=HYPERLINK(\"x\")"));
    }

    #[test]
    fn aligned_right_aligns_numbers() {
        let mut buf = Vec::new();
        sample().write_aligned(&mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[2].ends_with("-0.250  -3"), "{text}");
        assert!(lines[3].ends_with("-   7"), "{text}");
    }
}
