//! Thin binary: parse the command line, set up logging (colours only on a terminal, never with
//! `NO_COLOR`), call the library, map the result to an exit code.
fn main() -> std::process::ExitCode {
    keep_freed_memory();
    ignore_file_size_signal();
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
        .with_ansi(log_colours())
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

/// Colour escape codes in the log only when stderr is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>): cron mail, CI logs and files get plain text.
fn log_colours() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A write past the file size limit (`ulimit -f`, RLIMIT_FSIZE) raises SIGXFSZ, whose default action
/// kills the process without a word (exit 153). Ignored, the write fails with EFBIG ("File too large")
/// instead, and the command prints the file and the cause like any other write error.
#[cfg(all(
    unix,
    not(any(target_arch = "mips", target_arch = "mips64", target_arch = "mips32r6"))
))]
fn ignore_file_size_signal() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGXFSZ: i32 = 25;
    const SIG_IGN: usize = 1;
    // SAFETY: sets the disposition of one signal to "ignore"; no handler code runs. Called before any
    // thread starts.
    unsafe {
        signal(SIGXFSZ, SIG_IGN);
    }
}

#[cfg(not(all(
    unix,
    not(any(target_arch = "mips", target_arch = "mips64", target_arch = "mips32r6"))
)))]
fn ignore_file_size_signal() {}
