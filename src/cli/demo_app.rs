use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

use super::Ctx;
use crate::error::{CommandError, ExitCode};

/// Serve the demo's sample quote service (used by `backout demo`)
///
/// Serves /health, /api/quote, /api/version and /metrics (Prometheus); its version, error rate, latency
/// and memory come from the config file, read at start.
///
/// Example: backout demo-app --config app.toml --port 8000
#[derive(Debug, Args)]
pub struct DemoAppArgs {
    /// The service's config file (version, error-rate, latency-ms, memory-mb)
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    #[arg(long, default_value_t = 8000)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
}

pub async fn run(_ctx: &Ctx, args: DemoAppArgs) -> Result<ExitCode, CommandError> {
    crate::demo::app::serve(&args.config, SocketAddr::new(args.host, args.port)).await?;
    Ok(ExitCode::Ok)
}
