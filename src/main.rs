//! The `backout` binary: parse arguments, run, map the result to an exit code.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(backout::cli::main() as u8)
}
