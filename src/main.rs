//! Thin binary: parse the command line, set up logging, call the library, map the result to an exit code.
fn main() -> std::process::ExitCode {
    keep_freed_memory();
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
        Ok(exit) => exit.into(),
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
            tumor_audit::commands::exit_code(&e).into()
        }
    }
}

/// glibc serves every allocation above 32 MiB with a fresh mmap and unmaps it on free, so each
/// activation tensor of a forward batch (tens to hundreds of MiB) was page-faulted and zeroed by the
/// kernel again, layer after layer: measured on the seed profile, half of the audit's time was system
/// time (35 s of 71 s for 4 images). Serving large blocks from the heap and keeping freed memory for
/// reuse removes that (1 s of system time, every method about 2x faster); the cost is that the
/// process keeps its peak heap (about 1.4 GiB on the seed profile) until it exits.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_MAX: i32 = -4;
    // SAFETY: mallopt only changes glibc's allocation policy; called before any thread starts.
    unsafe {
        mallopt(M_MMAP_MAX, 0);
        mallopt(M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
