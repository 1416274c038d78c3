//! A PostgreSQL dump out of the store for `backout export`: the whole
//! database as plain SQL (`pg_restore --file`), or one table's rows as INSERTs
//! naming their columns (every value a string literal PostgreSQL casts to the
//! column's type), or as CSV.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::super::{DbError, RowFormat, csv_field, run_tool};
use super::copy::{self, Event, literal, unescape};
use super::list;

/// Writes the dump at `dump` as a plain SQL script to `out`.
pub async fn sql(dump: &Path, out: &Path, timeout: Duration) -> Result<(), DbError> {
    let argv = vec![
        "pg_restore".into(),
        format!("--file={}", out.display()),
        dump.display().to_string(),
    ];
    let dir = dump.parent().unwrap_or(Path::new("."));
    run_tool(argv, Vec::new(), dir, timeout, None, &dump.display().to_string()).await?;
    Ok(())
}

/// The dump's table `name` (`schema.table`, or `table` when only one schema
/// has it), or why not, with the tables it holds.
pub async fn resolve(dump: &Path, name: &str, timeout: Duration, owner: &str) -> Result<(String, String), String> {
    let toc = list(dump, timeout, owner).await.map_err(|e| e.to_string())?;
    let found: Vec<&(String, String)> = toc
        .tables
        .iter()
        .filter(|(s, t)| format!("{s}.{t}") == name || t == name)
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "the dump holds no table {name:?}; it holds: {}",
            toc.tables
                .iter()
                .map(|(s, t)| format!("{s}.{t}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        many => Err(format!(
            "{name:?} is in more than one schema: {}; name it as schema.table",
            many.iter()
                .map(|(s, t)| format!("{s}.{t}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Writes the rows of `table` in the dump as INSERTs or CSV; returns how many.
pub async fn table_rows(
    dump: &Path,
    table: &(String, String),
    format: RowFormat,
    timeout: Duration,
    w: &mut (dyn Write + Send),
) -> Result<u64, DbError> {
    let argv = vec![
        "pg_restore".into(),
        "--data-only".into(),
        "--file=-".into(),
        dump.display().to_string(),
    ];
    let dir = dump.parent().unwrap_or(Path::new(".")).to_path_buf();
    let io = |source| DbError::Io {
        action: "write the export of",
        path: dump.to_path_buf(),
        source,
    };
    let mut count = 0;
    let mut head: Option<String> = None;
    let mut inside = false;
    copy::stream(
        argv,
        Vec::new(),
        &dir,
        timeout,
        None,
        &dump.display().to_string(),
        |e| {
            match e {
                Event::Table(h) => {
                    inside = h.schema == table.0 && h.table == table.1;
                    if inside {
                        let cols: Vec<String> = h.columns.iter().map(|c| copy::quote_ident(c)).collect();
                        head = Some(match format {
                            RowFormat::Sql => format!("INSERT INTO {} ({}) VALUES (", h.qualified(), cols.join(", ")),
                            RowFormat::Csv => {
                                let names: Vec<String> = h.columns.iter().map(|c| csv_field(Some(c))).collect();
                                writeln!(w, "{}", names.join(",")).map_err(io)?;
                                String::new()
                            }
                        });
                    }
                }
                Event::Row(line) if inside => {
                    let values = line.split(|b| *b == b'\t').map(unescape);
                    let text = match format {
                        RowFormat::Sql => {
                            let vals: Vec<String> = values.map(|v| literal(v.as_deref())).collect();
                            format!("{}{});", head.as_deref().unwrap_or_default(), vals.join(", "))
                        }
                        RowFormat::Csv => {
                            let vals: Vec<String> = values
                                .map(|v| csv_field(v.as_deref().map(String::from_utf8_lossy).as_deref()))
                                .collect();
                            vals.join(",")
                        }
                    };
                    writeln!(w, "{text}").map_err(io)?;
                    count += 1;
                }
                Event::Row(_) => {}
            }
            Ok(())
        },
    )
    .await?;
    Ok(count)
}
