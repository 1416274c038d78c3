//! What restoring a SQLite dump discards: each table of the live database
//! compared with the dump's, row by row — by primary key where the table has
//! one (an `INTEGER PRIMARY KEY` is its rowid), by whole row where it has none
//! — over the columns both have; tables and columns added or dropped since are
//! schema changes. The live database is read in one read transaction, so the
//! counts are of one consistent state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::super::rows::{Differ, Encoder};
use super::super::{DbError, DbSnapshot, Measured};
use super::{live_path, read_only, sql};
use crate::plan::Database;
use crate::resource::discard::{Count, SchemaChange};

/// A table's columns (in order) and the columns of its primary key.
struct Table {
    columns: Vec<String>,
    key: Vec<String>,
}

pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Tables (SQLite's own left out) with their columns.
fn tables(conn: &Connection, path: &Path) -> Result<BTreeMap<String, Table>, DbError> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(sql(path, "list its tables"))?;
    let mut out = BTreeMap::new();
    for name in names {
        let mut key: Vec<(i64, String)> = Vec::new();
        let mut columns = Vec::new();
        let mut st = conn
            .prepare(&format!("PRAGMA table_info({})", quote(&name)))
            .map_err(sql(path, "read a table's columns"))?;
        let mut rows = st.query([]).map_err(sql(path, "read a table's columns"))?;
        while let Some(r) = rows.next().map_err(sql(path, "read a table's columns"))? {
            let col: String = r.get(1).map_err(sql(path, "read a table's columns"))?;
            let pk: i64 = r.get(5).map_err(sql(path, "read a table's columns"))?;
            if pk > 0 {
                key.push((pk, col.clone()));
            }
            columns.push(col);
        }
        key.sort();
        out.insert(
            name,
            Table {
                columns,
                key: key.into_iter().map(|(_, c)| c).collect(),
            },
        );
    }
    Ok(out)
}

fn encode(enc: &mut Encoder, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => enc.push(0, b""),
        ValueRef::Integer(i) => enc.push(1, &i.to_le_bytes()),
        ValueRef::Real(f) => enc.push(2, &f.to_bits().to_le_bytes()),
        ValueRef::Text(t) => enc.push(3, t),
        ValueRef::Blob(b) => enc.push(4, b),
    }
}

/// Feeds every row of `table` (its `columns`, keyed by the ones at `key`) to `f`.
fn each_row(
    conn: &Connection,
    path: &Path,
    table: &str,
    columns: &[String],
    key: &[usize],
    mut f: impl FnMut(&[u8], &[u8]),
) -> Result<(), DbError> {
    let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let select = if list.is_empty() {
        format!("SELECT NULL FROM {}", quote(table))
    } else {
        format!("SELECT {} FROM {}", list.join(", "), quote(table))
    };
    let mut st = conn.prepare(&select).map_err(sql(path, "read a table"))?;
    let mut rows = st.query([]).map_err(sql(path, "read a table"))?;
    let (mut k, mut v) = (Encoder::default(), Encoder::default());
    while let Some(r) = rows.next().map_err(sql(path, "read a table"))? {
        k.clear();
        v.clear();
        for i in 0..columns.len() {
            let val = r.get_ref(i).map_err(sql(path, "read a row"))?;
            encode(&mut v, val);
            if key.contains(&i) {
                encode(&mut k, val);
            }
        }
        f(k.bytes(), v.bytes());
    }
    Ok(())
}

fn count(conn: &Connection, path: &Path, table: &str) -> Result<u64, DbError> {
    conn.query_row(&format!("SELECT count(*) FROM {}", quote(table)), [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
    .map_err(sql(path, "count a table's rows"))
}

fn change(object: &str, name: String, change: &str) -> SchemaChange {
    SchemaChange {
        object: object.into(),
        name,
        change: change.into(),
    }
}

/// Compares the live database with the dump in `dir`.
pub fn measure(db: &Database, snap: &DbSnapshot, dir: &Path) -> Result<Measured, DbError> {
    let live = live_path(db)?;
    let dump = dir.join(&snap.file.name);
    let cp = read_only(&dump)?;
    let mut out = Measured::default();
    if !live.is_file() {
        // Nothing there: the restore creates it and discards nothing.
        return Ok(out);
    }
    let now = read_only(live)?;
    // One read transaction: every table is read from the same state.
    now.execute_batch("BEGIN").map_err(sql(live, "begin a read"))?;
    let then = tables(&cp, &dump)?;
    let tables_now = tables(&now, live)?;
    let names: BTreeSet<&String> = then.keys().chain(tables_now.keys()).collect();
    for name in names {
        match (then.get(name), tables_now.get(name)) {
            (Some(_), None) => {
                out.schema.push(change("table", name.clone(), "dropped"));
                out.counts.push(Count {
                    within: name.clone(),
                    deleted: count(&cp, &dump, name)?,
                    ..Count::default()
                });
            }
            (None, Some(_)) => {
                out.schema.push(change("table", name.clone(), "added"));
                out.counts.push(Count {
                    within: name.clone(),
                    added: count(&now, live, name)?,
                    ..Count::default()
                });
            }
            (Some(t), Some(n)) => {
                for c in n.columns.iter().filter(|c| !t.columns.contains(c)) {
                    out.schema.push(change("column", format!("{name}.{c}"), "added"));
                }
                for c in t.columns.iter().filter(|c| !n.columns.contains(c)) {
                    out.schema.push(change("column", format!("{name}.{c}"), "dropped"));
                }
                let common: Vec<String> = n.columns.iter().filter(|c| t.columns.contains(c)).cloned().collect();
                let key: Vec<usize> = n
                    .key
                    .iter()
                    .filter_map(|k| common.iter().position(|c| c == k))
                    .collect();
                let keyed = !key.is_empty() && key.len() == n.key.len();
                let key = if keyed { key } else { Vec::new() };
                let mut d = Differ::new(keyed);
                each_row(&cp, &dump, name, &common, &key, |k, v| d.checkpoint_row(k, v))?;
                each_row(&now, live, name, &common, &key, |k, v| d.live_row(k, v))?;
                out.counts.push(d.finish(name));
            }
            (None, None) => {}
        }
    }
    let _ = now.execute_batch("COMMIT");
    Ok(out)
}
