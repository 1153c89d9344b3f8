//! Output helpers: kubectl-style aligned tables, ages, JSON/YAML.

use std::time::SystemTime;

use anyhow::Result;
use serde_json::Value;

/// `-o` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns.
    Table,
    /// Aligned columns with extra detail.
    Wide,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Renders rows as columns separated by three spaces, like kubectl.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            s.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 3;
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// kubectl-style age of an RFC 3339 timestamp, now.
pub(crate) fn age(timestamp: Option<&str>) -> String {
    pier_model::columns::age(timestamp, SystemTime::now())
}

/// Prints a value as JSON or YAML.
pub(crate) fn print_value(value: &Value, format: Format) -> Result<()> {
    match format {
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(value)?),
        _ => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

/// The `items` of a list the API returned (none when it has no such array).
pub(crate) fn items(list: &Value) -> &[Value] {
    list["items"].as_array().map_or(&[], Vec::as_slice)
}

pub(crate) use pier_model::columns::s;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let t = table(
            &["NAME", "TYPE"],
            &[
                vec!["web".into(), "ClusterIP".into()],
                vec!["a-long-name".into(), "NodePort".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME          TYPE\nweb           ClusterIP\na-long-name   NodePort\n"
        );
    }
}
