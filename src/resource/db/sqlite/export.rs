//! A SQLite dump as SQL, for `backout export`: the whole database the way the
//! `sqlite3` shell's `.dump` writes it (schema, then every row as an INSERT,
//! in one transaction), or one table's rows as INSERTs naming their columns,
//! or as CSV, to salvage rows by hand.

use std::io::Write;
use std::path::Path;

use rusqlite::types::ValueRef;

use super::super::{DbError, RowFormat, csv_field};
use super::measure::quote;
use super::{read_only, sql};

fn io(path: &Path) -> impl Fn(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io {
        action: "write the export of",
        path: path.to_path_buf(),
        source,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A value as an SQL literal SQLite reads back as the same value.
fn literal(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) if f.is_infinite() => (if f > 0.0 { "9.0e999" } else { "-9.0e999" }).into(),
        ValueRef::Real(f) => format!("{f:?}"),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) if !s.contains('\0') => format!("'{}'", s.replace('\'', "''")),
            _ => format!("CAST(X'{}' AS TEXT)", hex(t)),
        },
        ValueRef::Blob(b) => format!("X'{}'", hex(b)),
    }
}

/// A value for CSV: NULL as an empty field, a blob as `\x` and hex.
fn csv_value(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(format!("{f:?}")),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(format!("\\x{}", hex(b))),
    }
}

/// The tables of the database (SQLite's own left out), in order.
pub fn table_names(path: &Path) -> Result<Vec<String>, DbError> {
    let conn = read_only(path)?;
    conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(sql(path, "list its tables"))
}

/// Writes `INSERT INTO "table"...` for every row; returns how many.
fn rows_as_inserts(
    conn: &rusqlite::Connection,
    path: &Path,
    table: &str,
    named: bool,
    w: &mut dyn Write,
) -> Result<u64, DbError> {
    let mut st = conn
        .prepare(&format!("SELECT * FROM {}", quote(table)))
        .map_err(sql(path, "read a table"))?;
    let cols: Vec<String> = st.column_names().iter().map(|c| quote(c)).collect();
    let head = if named {
        format!("INSERT INTO {}({}) VALUES(", quote(table), cols.join(","))
    } else {
        format!("INSERT INTO {} VALUES(", quote(table))
    };
    let n = cols.len();
    let mut rows = st.query([]).map_err(sql(path, "read a table"))?;
    let mut count = 0;
    while let Some(r) = rows.next().map_err(sql(path, "read a row"))? {
        let mut vals = Vec::with_capacity(n);
        for i in 0..n {
            vals.push(literal(r.get_ref(i).map_err(sql(path, "read a row"))?));
        }
        writeln!(w, "{head}{});", vals.join(",")).map_err(io(path))?;
        count += 1;
    }
    Ok(count)
}

/// The whole database as SQL, `.dump`-style; returns the rows written.
pub fn dump_sql(path: &Path, w: &mut dyn Write) -> Result<u64, DbError> {
    let conn = read_only(path)?;
    let objects: Vec<(String, String, String)> = conn
        .prepare(
            "SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' \
             ORDER BY type = 'table' DESC, type = 'view', rowid",
        )
        .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .map_err(sql(path, "read its schema"))?;
    writeln!(w, "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;").map_err(io(path))?;
    let mut count = 0;
    for (kind, name, text) in &objects {
        writeln!(w, "{text};").map_err(io(path))?;
        if kind == "table" && !text.to_ascii_uppercase().starts_with("CREATE VIRTUAL TABLE") {
            count += rows_as_inserts(&conn, path, name, false, w)?;
        }
    }
    let has_seq: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_sequence'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(sql(path, "read its schema"))?
        > 0;
    if has_seq {
        writeln!(w, "DELETE FROM sqlite_sequence;").map_err(io(path))?;
        rows_as_inserts(&conn, path, "sqlite_sequence", false, w)?;
    }
    writeln!(w, "COMMIT;").map_err(io(path))?;
    Ok(count)
}

/// One table's rows, as INSERTs naming the columns or as CSV with a header
/// line; returns how many rows.
pub fn table_rows(path: &Path, table: &str, format: RowFormat, w: &mut dyn Write) -> Result<u64, DbError> {
    let conn = read_only(path)?;
    match format {
        RowFormat::Sql => rows_as_inserts(&conn, path, table, true, w),
        RowFormat::Csv => {
            let mut st = conn
                .prepare(&format!("SELECT * FROM {}", quote(table)))
                .map_err(sql(path, "read a table"))?;
            let names: Vec<String> = st.column_names().iter().map(|c| csv_field(Some(c))).collect();
            writeln!(w, "{}", names.join(",")).map_err(io(path))?;
            let n = names.len();
            let mut rows = st.query([]).map_err(sql(path, "read a table"))?;
            let mut count = 0;
            while let Some(r) = rows.next().map_err(sql(path, "read a row"))? {
                let mut vals = Vec::with_capacity(n);
                for i in 0..n {
                    let v = csv_value(r.get_ref(i).map_err(sql(path, "read a row"))?);
                    vals.push(csv_field(v.as_deref()));
                }
                writeln!(w, "{}", vals.join(",")).map_err(io(path))?;
                count += 1;
            }
            Ok(count)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_dump_loads_back_into_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, s TEXT, r REAL, b BLOB); \
             CREATE INDEX t_s ON t(s); CREATE VIEW v AS SELECT s FROM t; \
             INSERT INTO t (s, r, b) VALUES ('it''s', 0.1, x'00ff'), (NULL, 1e300, NULL), ('two\nlines', -2.5, x'');",
        )
        .unwrap();
        drop(c);
        let mut sql = Vec::new();
        assert_eq!(dump_sql(&db, &mut sql).unwrap(), 3);
        let back = rusqlite::Connection::open_in_memory().unwrap();
        back.execute_batch(&String::from_utf8(sql).unwrap()).unwrap();
        let q = "SELECT group_concat(quote(id) || quote(s) || quote(r) || quote(b), '|') FROM t";
        let orig = rusqlite::Connection::open(&db).unwrap();
        let a: String = orig.query_row(q, [], |r| r.get(0)).unwrap();
        let b: String = back.query_row(q, [], |r| r.get(0)).unwrap();
        assert_eq!(a, b);
        let seq: i64 = back
            .query_row("SELECT seq FROM sqlite_sequence", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seq, 3);

        let mut csv = Vec::new();
        assert_eq!(table_rows(&db, "t", RowFormat::Csv, &mut csv).unwrap(), 3);
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "id,s,r,b\n1,it's,0.1,\\x00ff\n2,,1e300,\n3,\"two\nlines\",-2.5,\\x\n"
        );
        let mut ins = Vec::new();
        table_rows(&db, "t", RowFormat::Sql, &mut ins).unwrap();
        assert!(
            String::from_utf8(ins)
                .unwrap()
                .starts_with("INSERT INTO \"t\"(\"id\",\"s\",\"r\",\"b\") VALUES(1,'it''s',0.1,X'00ff');\n")
        );
    }
}
