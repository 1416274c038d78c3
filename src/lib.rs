//! backout turns a hand-written rollback plan into one executable plan file.
//!
//! # The flow
//!
//! ```text
//! plan ──► checkpoint ──► change ──► watch ──► verdict ──► rollback ──► verify ──► report
//!  │          │                        │          │            │           │          │
//!  └──────────┴───────────── operation log (.backout/state.db) ┴───────────┴──────────┘
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`plan`] | `backout.toml`: raw serde schema → validated [`plan::Plan`]; units, rule grammar, `${ENV}` secrets, located errors |
//! | [`resource`] | what a checkpoint captures ([`resource::git`], [`resource::paths`], [`resource::db`], [`resource::command`]), the checkpoint itself, and restore |
//! | [`store`] | the content-addressed object store: objects, manifests, fsck |
//! | [`watch`] | probes sampled concurrently, windows, baselines, rules and statistical tests → explained [`watch::Verdict`]s; the decision matrix, scheduled reviews, watch status, replay over recorded samples |
//! | [`probe`] | one measurement of one probe: [`probe::http`], [`probe::tcp`], [`probe::command`], [`probe::log`], [`probe::process`], [`probe::prometheus`], [`probe::compose`] |
//! | [`rollback`] | the journaled step executor, safety checkpoint first; levels and options, resume after a kill, undo/redo, `backout run`'s phases; the default target ([`rollback::target`]) |
//! | [`deploy`] | deploy markers: when a change began, the checkpoint of the state before it, the deploy command's outcome |
//! | [`service`] | services backout starts, stops and restarts: process, compose, systemd, command |
//! | [`verify`] | checks that prove recovery, and "stable for D" |
//! | [`incident`] | the response to a rollback verdict: roll back, verify, report |
//! | [`report`] | incident reports (Markdown, JSON) with timeline and recovery time |
//! | [`oplog`] | the operation log: operations, steps, events, samples, baselines, checkpoints, incidents |
//! | [`exec`] | child processes in their own process group, timeouts, bounded output |
//! | [`lock`] | the one-mutating-command-at-a-time lock |
//! | [`redact`] | the redaction layer every sink goes through |
//! | [`output`] | the only module that writes to the terminal |
//! | [`context`] | environment and clock, passed in so tests can fix them |
//! | [`demo`] | the embedded sample service and the demo scenario |
//! | [`cli`] | one file per command, each wiring the modules above |
//!
//! Domain modules never print and never read the process environment; the CLI
//! reads it once ([`context::Env`]) and the [`output::Printer`] writes.
//!
//! # Files on disk
//!
//! ```text
//! backout.toml                the plan (committed with the project it protects)
//! .backout/state.db           SQLite, WAL: operations, steps, events, samples, baselines, checkpoints, incidents
//! .backout/lock               held by any command that changes something
//! .backout/objects/ab/cdef…   content-addressed objects: zstd-compressed, named by their BLAKE3 hash
//! .backout/objects/tmp/       objects being written (made durable, then renamed into place)
//! .backout/tmp/               staging for restores (same file system as the project)
//! .backout/run/<service>.pid  pid and kernel start time of a process service
//! .backout/run/<service>.log  its stdout and stderr
//! .backout/probes/<probe>.cursor  a log probe's read position (device, inode, offset)
//! .backout/reports/inc-N/     report.md, report.json
//! refs/backout/checkpoints/*  git refs pinning captured working trees in the user's repository
//! ```

pub mod cli;
pub mod context;
pub mod demo;
pub mod deploy;
pub mod diagnostics;
pub mod error;
pub mod exec;
pub mod incident;
pub mod lock;
pub mod notify;
pub mod oplog;
pub mod output;
pub mod plan;
pub mod probe;
pub mod redact;
pub mod report;
pub mod resource;
pub mod rollback;
pub mod runbook;
pub mod service;
pub mod store;
pub mod verify;
pub mod watch;
pub mod workspace;
