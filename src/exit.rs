//! The process exit codes: one meaning per code, so that a scheduler (cron, Slurm, Kubernetes) can act on
//! them without reading the output. The README's "Exit codes" section and `tumor-audit --help` list the
//! same table; the deploy templates act on it.

/// How a command ended, as the process exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Exit {
    /// Everything asked for was done.
    Ok = 0,
    /// The command stopped on an error (a database that cannot be opened or written, a model that cannot
    /// be loaded, a file system error, a lock held by another process, ...). Retrying may help once the
    /// cause is fixed; partial results are resumable.
    Fatal = 1,
    /// The command line or the configuration is wrong (an unknown option, key, method, metric, class or
    /// run name, a value out of range): nothing was done. Retrying the same command cannot help. clap
    /// uses this code for its own parse errors too.
    Usage = 2,
    /// The command finished, but some images failed at some stage (decode, prediction, a method, a
    /// write); each is a row of the run's `errors` table and was printed.
    Partial = 3,
    /// `diff --fail-on`: a rule was crossed (the nightly gate failed).
    Gate = 4,
    /// `merge`: shards are missing or unfinished, so the merged run is incomplete ('interrupted').
    Incomplete = 5,
}

impl Exit {
    /// Every code with a one-line meaning, in order (the `--help` and README table).
    pub const TABLE: [(Exit, &'static str); 6] = [
        (Exit::Ok, "done"),
        (
            Exit::Fatal,
            "stopped on an error (database, model, file system, lock)",
        ),
        (
            Exit::Usage,
            "the command line or the configuration is wrong; nothing was done",
        ),
        (
            Exit::Partial,
            "finished, but some images failed (see the run's errors table)",
        ),
        (Exit::Gate, "diff: a --fail-on rule was crossed"),
        (
            Exit::Incomplete,
            "merge: shards missing or unfinished; the merged run is 'interrupted'",
        ),
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The worse of two outcomes (a gate failure outranks failed images, which outrank success).
    pub fn max(self, other: Exit) -> Exit {
        if other.code() > self.code() {
            other
        } else {
            self
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// A mistake in what the user asked for (a name that does not exist, an option that does not apply):
/// exits with [`Exit::Usage`]. The text names what was given and what is allowed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_in_table_order() {
        let codes: Vec<u8> = Exit::TABLE.iter().map(|(e, _)| e.code()).collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(Exit::Partial.max(Exit::Ok), Exit::Partial);
        assert_eq!(Exit::Partial.max(Exit::Gate), Exit::Gate);
    }

    #[test]
    fn the_help_text_lists_the_same_table() {
        let help: String = Exit::TABLE
            .iter()
            .map(|(e, what)| format!("\n  {}  {what}", e.code()))
            .collect();
        assert_eq!(crate::cli::EXIT_CODES_HELP, format!("Exit codes:{help}"));
    }
}
