//! What restoring a PostgreSQL dump discards: every table's rows in the dump
//! (streamed by `pg_restore --data-only`) compared with the live database's
//! (streamed by `pg_dump --data-only`, one consistent snapshot), by primary key
//! where the table has one and by whole row where it has none, over the columns
//! both have. Both sides come out of the same tool family in the same COPY text
//! format, under the same session settings, so an unchanged value reads the
//! same on both; only hashes are kept. Tables and columns added or dropped since
//! the checkpoint are schema changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use super::super::rows::{Differ, Encoder};
use super::super::{DbError, DbSnapshot, Measured, ServerUrl};
use super::copy::{self, Event, Header};
use super::{dbname_arg, env, list, psql};
use crate::plan::Database;
use crate::resource::discard::{Count, SchemaChange};

/// A live table: its columns in order (generated ones left out, as COPY does)
/// and its primary key's. A partitioned table's rows are its partitions'.
#[derive(Debug, Default)]
struct LiveTable {
    columns: Vec<String>,
    key: Vec<String>,
}

type Name = (String, String);

/// The table whose rows are streaming, with the positions of its compared
/// fields and of its key's.
type Reading = (Name, Vec<Option<usize>>, Vec<Option<usize>>);

async fn live_schema(url: &ServerUrl, db: &Database, cwd: &Path) -> Result<BTreeMap<Name, LiveTable>, DbError> {
    let rows = psql(
        url,
        "SELECT n.nspname, c.relname, c.relkind, coalesce(a.attname, ''), \
         coalesce(a.attnum = ANY (i.indkey::int2[]), false) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
         LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
         WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
         AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') \
         ORDER BY 1, 2, a.attnum",
        db.timeout,
        cwd,
    )
    .await?;
    let mut out: BTreeMap<Name, LiveTable> = BTreeMap::new();
    for r in rows.into_iter().filter(|r| r.len() == 5) {
        let t = out.entry((r[0].clone(), r[1].clone())).or_default();
        if !r[3].is_empty() {
            t.columns.push(r[3].clone());
            if r[4] == "t" {
                t.key.push(r[3].clone());
            }
        }
    }
    Ok(out)
}

/// One table being compared: which fields of a row to hash, per side.
struct Compare {
    /// The live columns the dump also has, in live order.
    common: Vec<String>,
    key: Vec<String>,
    differ: Differ,
}

impl Compare {
    fn positions(names: &[String], header: &Header) -> Vec<Option<usize>> {
        names
            .iter()
            .map(|c| header.columns.iter().position(|h| h == c))
            .collect()
    }
}

/// Hashes a COPY line's fields at `values` and `key` positions.
fn encode(line: &[u8], values: &[Option<usize>], key: &[Option<usize>], k: &mut Encoder, v: &mut Encoder) {
    let fields: Vec<&[u8]> = line.split(|b| *b == b'\t').collect();
    k.clear();
    v.clear();
    for p in values {
        v.push(1, p.and_then(|i| fields.get(i)).copied().unwrap_or(b"\\N"));
    }
    for p in key {
        k.push(1, p.and_then(|i| fields.get(i)).copied().unwrap_or(b"\\N"));
    }
}

/// Compares the live database with the dump in `dir`.
pub async fn measure(db: &Database, snap: &DbSnapshot, dir: &Path) -> Result<Measured, DbError> {
    let url = ServerUrl::parse(db)?;
    let dump = dir.join(&snap.file.name);
    let toc = list(&dump, db.timeout, &db.name).await?;
    let live = live_schema(&url, db, dir).await?;
    let mut out = Measured::default();
    let change = |object: &str, name: String, change: &str| SchemaChange {
        object: object.into(),
        name,
        change: change.into(),
    };
    let shown = |n: &Name| format!("{}.{}", n.0, n.1);
    for t in toc.tables.iter().filter(|t| !live.contains_key(*t)) {
        out.schema.push(change("table", shown(t), "dropped"));
    }
    for t in live.keys().filter(|t| !toc.tables.contains(*t)) {
        out.schema.push(change("table", shown(t), "added"));
    }

    // The checkpoint's rows first.
    let mut compares: HashMap<Name, Compare> = HashMap::new();
    let mut only_then: BTreeMap<Name, u64> = BTreeMap::new();
    let mut columns_then: BTreeMap<Name, Vec<String>> = BTreeMap::new();
    {
        let mut current: Option<Reading> = None;
        let (mut k, mut v) = (Encoder::default(), Encoder::default());
        let argv = vec![
            "pg_restore".into(),
            "--data-only".into(),
            "--file=-".into(),
            dump.display().to_string(),
        ];
        let target = dump.display().to_string();
        copy::stream(argv, Vec::new(), dir, db.timeout, None, &target, |e| {
            match e {
                Event::Table(h) => {
                    let name = (h.schema.clone(), h.table.clone());
                    columns_then.insert(name.clone(), h.columns.clone());
                    match live.get(&name) {
                        Some(l) => {
                            let common: Vec<String> =
                                l.columns.iter().filter(|c| h.columns.contains(c)).cloned().collect();
                            let keyed = !l.key.is_empty() && l.key.iter().all(|c| h.columns.contains(c));
                            let key = if keyed { l.key.clone() } else { Vec::new() };
                            let (vp, kp) = (Compare::positions(&common, h), Compare::positions(&key, h));
                            compares.insert(
                                name.clone(),
                                Compare {
                                    common,
                                    key,
                                    differ: Differ::new(keyed),
                                },
                            );
                            current = Some((name, vp, kp));
                        }
                        None => {
                            only_then.insert(name.clone(), 0);
                            current = Some((name, Vec::new(), Vec::new()));
                        }
                    }
                }
                Event::Row(line) => {
                    if let Some((name, vp, kp)) = &current {
                        if let Some(c) = compares.get_mut(name) {
                            encode(line, vp, kp, &mut k, &mut v);
                            c.differ.checkpoint_row(k.bytes(), v.bytes());
                        } else if let Some(n) = only_then.get_mut(name) {
                            *n += 1;
                        }
                    }
                }
            }
            Ok(())
        })
        .await?;
    }

    // Then the live ones, from one snapshot.
    let mut only_now: BTreeMap<Name, u64> = BTreeMap::new();
    {
        let mut current: Option<Reading> = None;
        let (mut k, mut v) = (Encoder::default(), Encoder::default());
        let argv = vec![
            "pg_dump".into(),
            "--data-only".into(),
            "--format=plain".into(),
            "--no-password".into(),
            "--lock-wait-timeout=60000".into(),
            "--file=-".into(),
            dbname_arg(&url),
        ];
        copy::stream(argv, env(&url), dir, db.timeout, Some(&url), &url.shown(), |e| {
            match e {
                Event::Table(h) => {
                    let name = (h.schema.clone(), h.table.clone());
                    current = match compares.get(&name) {
                        Some(c) => Some((name, Compare::positions(&c.common, h), Compare::positions(&c.key, h))),
                        None if live.contains_key(&name) => {
                            only_now.insert(name.clone(), 0);
                            Some((name, Vec::new(), Vec::new()))
                        }
                        None => None,
                    };
                }
                Event::Row(line) => {
                    if let Some((name, vp, kp)) = &current {
                        if let Some(c) = compares.get_mut(name) {
                            encode(line, vp, kp, &mut k, &mut v);
                            c.differ.live_row(k.bytes(), v.bytes());
                        } else if let Some(n) = only_now.get_mut(name) {
                            *n += 1;
                        }
                    }
                }
            }
            Ok(())
        })
        .await?;
    }

    // Columns added and dropped, for the tables whose data both sides hold.
    let names: BTreeSet<&Name> = compares.keys().collect();
    for name in names {
        let (Some(then), Some(now)) = (columns_then.get(name), live.get(name)) else {
            continue;
        };
        for c in now.columns.iter().filter(|c| !then.contains(c)) {
            out.schema
                .push(change("column", format!("{}.{c}", shown(name)), "added"));
        }
        for c in then.iter().filter(|c| !now.columns.contains(c)) {
            out.schema
                .push(change("column", format!("{}.{c}", shown(name)), "dropped"));
        }
    }
    let mut counts: BTreeMap<Name, Count> = BTreeMap::new();
    for (name, c) in compares {
        let count = c.differ.finish(&shown(&name));
        counts.insert(name, count);
    }
    for (name, n) in only_then {
        counts.insert(
            name.clone(),
            Count {
                within: shown(&name),
                deleted: n,
                ..Count::default()
            },
        );
    }
    for (name, n) in only_now {
        counts.insert(
            name.clone(),
            Count {
                within: shown(&name),
                added: n,
                ..Count::default()
            },
        );
    }
    out.counts = counts.into_values().collect();
    Ok(out)
}
