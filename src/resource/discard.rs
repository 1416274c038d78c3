//! What a restore discards: everything written since the checkpoint that the
//! restore replaces — rows (SQLite, PostgreSQL), keys (Redis), files (paths) —
//! measured before anything is written, said in the dry run, on the console,
//! in `--json`, in the operation log and in the incident report, with the
//! safety checkpoint that keeps it (and the `backout export` that gets it out).

use serde::{Deserialize, Serialize};

use super::db::human_bytes;

/// What restoring one resource discards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discard {
    pub resource: String,
    /// `row`, `key` or `file`.
    pub unit: String,
    /// The checkpoint restored: "since" it.
    pub since: String,
    /// Per table (or Redis database; one for a path), what changed since.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<Count>,
    /// Tables and columns added or dropped since.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema: Vec<SchemaChange>,
    /// Why it could not be measured (the safety checkpoint keeps it all the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmeasured: Option<String>,
    /// The safety checkpoint holding what is discarded (`None` in a dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_in: Option<String>,
}

/// Rows of one table (keys of one Redis database, files of a path) added,
/// changed and deleted since the checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// The table, `database N` for Redis, empty for a path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub within: String,
    pub added: u64,
    pub changed: u64,
    pub deleted: u64,
    /// Bytes of the files added and changed since (paths only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_added: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_changed: Option<u64>,
}

impl Count {
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.changed == 0 && self.deleted == 0
    }
}

/// A table or column added or dropped since the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaChange {
    /// `table` or `column`.
    pub object: String,
    /// `users`, or `users.email` for a column.
    pub name: String,
    /// `added` or `dropped`.
    pub change: String,
}

impl std::fmt::Display for SchemaChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.object, self.name, self.change)
    }
}

fn n_of(n: u64, unit: &str) -> String {
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

impl Discard {
    /// A discard of `resource` for `since`, not yet measured.
    pub fn new(resource: &str, unit: &str, since: &str) -> Discard {
        Discard {
            resource: resource.into(),
            unit: unit.into(),
            since: since.into(),
            ..Discard::default()
        }
    }

    /// Whether nothing written since the checkpoint is lost.
    pub fn is_nothing(&self) -> bool {
        self.unmeasured.is_none() && self.schema.is_empty() && self.counts.iter().all(Count::is_empty)
    }

    /// Total rows (keys, files) added, changed and deleted since.
    pub fn totals(&self) -> (u64, u64, u64) {
        self.counts
            .iter()
            .fold((0, 0, 0), |(a, c, d), n| (a + n.added, c + n.changed, d + n.deleted))
    }

    /// What is discarded, as clauses: `1 row added to users`, `table audit added`.
    pub fn clauses(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.counts {
            let bytes = |b: Option<u64>| b.map_or(String::new(), |b| format!(" ({})", human_bytes(b)));
            let (to, in_, from) = if c.within.is_empty() {
                (String::new(), String::new(), String::new())
            } else {
                (
                    format!(" to {}", c.within),
                    format!(" in {}", c.within),
                    format!(" from {}", c.within),
                )
            };
            if c.added > 0 {
                out.push(format!(
                    "{} added{to}{}",
                    n_of(c.added, &self.unit),
                    bytes(c.bytes_added)
                ));
            }
            if c.changed > 0 {
                out.push(format!(
                    "{} changed{in_}{}",
                    n_of(c.changed, &self.unit),
                    bytes(c.bytes_changed)
                ));
            }
            if c.deleted > 0 {
                out.push(format!("{} deleted{from} (put back)", n_of(c.deleted, &self.unit)));
            }
        }
        out.extend(self.schema.iter().map(|s| s.to_string()));
        out
    }

    /// The command that gets the discarded data out of the safety checkpoint.
    pub fn export_hint(&self, kept_in: &str) -> String {
        let base: String = self
            .resource
            .rsplit('/')
            .next()
            .unwrap_or("out")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let ext = match self.unit.as_str() {
            "row" => "sql",
            "key" => "rdb",
            _ => "tar",
        };
        format!("backout export {kept_in} {} -o {base}-{kept_in}.{ext}", self.resource)
    }

    /// One sentence for the console, the report and the log:
    /// `main: discards 1 row added to users since cp-3 (kept in safety checkpoint cp-7: `backout export ...`)`.
    pub fn sentence(&self) -> String {
        let kept = match &self.kept_in {
            Some(k) => format!("kept in safety checkpoint {k}: `{}`", self.export_hint(k)),
            None => "a safety checkpoint taken before the restore will keep it".to_string(),
        };
        if let Some(why) = &self.unmeasured {
            return format!(
                "{}: what the restore discards since {} could not be measured ({why}); {kept}",
                self.resource, self.since
            );
        }
        if self.is_nothing() {
            return format!("{}: nothing written since {} is discarded", self.resource, self.since);
        }
        format!(
            "{}: discards {} since {} ({kept})",
            self.resource,
            self.clauses().join(", "),
            self.since
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_discard_reads_as_a_sentence() {
        let mut d = Discard::new("main", "row", "cp-3");
        assert_eq!(d.sentence(), "main: nothing written since cp-3 is discarded");
        d.counts = vec![
            Count {
                within: "users".into(),
                added: 1,
                ..Count::default()
            },
            Count {
                within: "posts".into(),
                added: 2,
                changed: 1,
                deleted: 3,
                ..Count::default()
            },
        ];
        d.schema.push(SchemaChange {
            object: "column".into(),
            name: "users.email".into(),
            change: "added".into(),
        });
        d.kept_in = Some("cp-7".into());
        assert_eq!(
            d.sentence(),
            "main: discards 1 row added to users, 2 rows added to posts, 1 row changed in posts, \
             3 rows deleted from posts (put back), column users.email added since cp-3 \
             (kept in safety checkpoint cp-7: `backout export cp-7 main -o main-cp-7.sql`)"
        );
        assert_eq!(d.totals(), (3, 1, 3));
        let mut f = Discard::new("data/uploads", "file", "cp-1");
        f.counts.push(Count {
            added: 2,
            bytes_added: Some(2048),
            ..Count::default()
        });
        assert_eq!(
            f.sentence(),
            "data/uploads: discards 2 files added (2.0 kB) since cp-1 (a safety checkpoint taken before the restore will keep it)"
        );
        assert_eq!(
            f.export_hint("cp-2"),
            "backout export cp-2 data/uploads -o uploads-cp-2.tar"
        );
    }
}
