//! Thin binary: parse the command line, set up logging, call the library, map the result to an exit code.
fn main() -> std::process::ExitCode {
    let cli = tumor_audit::cli::Cli::parse_args();
    let default = match cli.verbose {
        0 => "warn,tumor_audit=info",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match tumor_audit::commands::run(cli) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            // Library errors already carry their cause in their text; add a cause only when it says more.
            let mut text = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !text.contains(&c) {
                    text = format!("{text}: {c}");
                }
            }
            eprintln!("error: {text}");
            std::process::ExitCode::from(1)
        }
    }
}
