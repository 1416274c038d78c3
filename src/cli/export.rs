use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::Ctx;
use crate::error::{CommandError, ExitCode};
use crate::resource::{self, RestoreError, export};

/// Write one resource of a checkpoint to a side file, to salvage data
///
/// What a restore discards is kept in its safety checkpoint; this gets it out
/// without restoring anything. A database as SQL (SQLite `.dump`-style,
/// PostgreSQL plain SQL), its dump file as captured (`--format sqlite`,
/// `dump`, `rdb`), a Redis snapshot as `redis-cli` commands (`--format text`);
/// with `--table`, one table's rows as INSERTs or CSV. A path as a tar archive,
/// or into a directory (`-o DIR/`); git's working tree as a tar archive; a
/// command's saved output as it is. An existing file is never replaced without
/// --force.
///
/// Example: backout export cp-7 main --table posts --format csv -o posts.csv
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The checkpoint: `cp-7` or `7`
    checkpoint: String,
    /// The resource: a database's or command's name, a captured path, or `git`
    resource: String,
    /// Where to write (a file; a directory for `--format dir`)
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,
    /// How to write it [default: sql for databases, rdb for Redis, tar for
    /// paths (dir when -o is a directory), raw for commands]
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Only this table's rows (databases): INSERTs naming their columns, or CSV
    #[arg(long, value_name = "TABLE")]
    table: Option<String>,
    /// Replace what is already at the output path
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    /// SQL: a whole database, or one table's rows as INSERTs
    Sql,
    /// One table's rows as CSV, a header line first
    Csv,
    /// The SQLite database file
    Sqlite,
    /// The database's dump file as captured
    Dump,
    /// The Redis snapshot (RDB file)
    Rdb,
    /// A Redis snapshot as redis-cli commands, one per key
    Text,
    /// A tar archive
    Tar,
    /// A directory tree
    Dir,
    /// A command's saved output
    Raw,
}

impl From<FormatArg> for export::Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Sql => export::Format::Sql,
            FormatArg::Csv => export::Format::Csv,
            FormatArg::Sqlite => export::Format::Sqlite,
            FormatArg::Dump => export::Format::Dump,
            FormatArg::Rdb => export::Format::Rdb,
            FormatArg::Text => export::Format::Text,
            FormatArg::Tar => export::Format::Tar,
            FormatArg::Dir => export::Format::Dir,
            FormatArg::Raw => export::Format::Raw,
        }
    }
}

pub async fn run(ctx: &Ctx, args: ExportArgs) -> Result<ExitCode, CommandError> {
    let ws = ctx.workspace()?;
    let cp = super::checkpoint_arg(&ws, &args.checkpoint)?;
    let id = cp.id;
    if !cp.complete {
        return Err(CommandError::usage(RestoreError::Incomplete(
            resource::checkpoint_name(id),
        )));
    }
    let output = if args.output.is_absolute() {
        args.output.clone()
    } else {
        ctx.cwd.join(&args.output)
    };
    let req = export::Request {
        resource: args.resource.trim_end_matches('/').to_string(),
        output,
        format: args.format.map(Into::into),
        table: args.table.clone(),
        force: args.force,
    };
    let done = export::export(&ws, &cp, &req).await.map_err(|e| {
        if e.downcast_ref::<export::ExportError>().is_some() {
            CommandError::usage(e)
        } else {
            e.into()
        }
    })?;
    ctx.printer.data(&done);
    let what = match (&done.table, done.items) {
        (Some(t), Some(n)) => format!("{n} row(s) of table {t}"),
        (None, Some(n)) if done.kind == "path" => format!("{n} entr{}", if n == 1 { "y" } else { "ies" }),
        (None, Some(n)) if done.format == export::Format::Text => format!("{n} key(s)"),
        (None, Some(n)) => format!("{n} row(s)"),
        _ => done.kind.clone(),
    };
    ctx.printer.out(format!(
        "exported {} of {} as {}: {what}, {} → {}",
        done.resource,
        done.checkpoint,
        done.format.name(),
        crate::resource::db::human_bytes(done.bytes),
        super::rel(&done.output, &ctx.cwd)
    ));
    Ok(ExitCode::Ok)
}
