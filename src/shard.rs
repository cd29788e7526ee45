//! Sharding an audit over several processes or machines (`audit --shard K/N`).
//!
//! An image belongs to shard `K` of `N` when the first 16 hex digits of its id (the sha256 of the file
//! bytes), read as an unsigned 64-bit integer, are `K` modulo `N`. The rule depends on the file content
//! only: not on paths, file order, the machine or how many files there are, so `N` processes with
//! `K = 0..N` cover a test set exactly once, and the same file is always in the same shard. A file that
//! cannot be read has no id and goes to shard 0, so that its error is recorded exactly once.
//!
//! `--shard auto` takes `K` (and `N`) from a Slurm job array or a Kubernetes Indexed Job; see
//! [`ShardArg::resolve`].
use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::dataset::{self, Sample};

/// Shard `index` of `count` (0-based: `0 <= index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// A bad `--shard` value or environment; the text says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShardError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ShardError> {
    Err(ShardError(msg.into()))
}

impl Shard {
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 {
            return err("the shard count must be at least 1, found 0");
        }
        if index >= count {
            let hint = if index == count {
                format!(
                    " (shards are numbered from 0: the last of {count} is {}/{count})",
                    count - 1
                )
            } else {
                String::new()
            };
            return err(format!(
                "shard index {index} is out of range for {count} shard(s): it must be 0 to {}{hint}",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether the image with this id belongs to this shard.
    pub fn contains(&self, image_id: &str) -> bool {
        shard_of(image_id, self.count) == self.index
    }

    /// The default database file name of this shard: `audit.shard-K-of-N.sqlite`.
    pub fn db_file_name(&self) -> String {
        format!("audit.shard-{}-of-{}.sqlite", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {} of {}", self.index, self.count)
    }
}

/// The shard (0..count) of an image id: its first 16 hex digits as a big-endian u64, modulo `count`.
/// An id that is not hex (never produced by tumor-audit) is hashed with sha256 first.
pub fn shard_of(image_id: &str, count: u32) -> u32 {
    assert!(count > 0, "shard count 0");
    let lead = image_id
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| {
            let id = dataset::content_id(image_id.as_bytes());
            u64::from_str_radix(&id[..16], 16).expect("sha256 hex")
        });
    (lead % count as u64) as u32
}

/// The value of `--shard`: `K/N`, `auto` or `auto/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    Fixed(Shard),
    /// From the environment; `count` is required for Kubernetes (which does not tell a pod `N`).
    Auto {
        count: Option<u32>,
    },
}

fn number(what: &str, s: &str) -> Result<u32, ShardError> {
    s.trim().parse::<u32>().or_else(|_| {
        err(format!(
            "{what} `{s}` is not a whole number from 0 to {}",
            u32::MAX
        ))
    })
}

impl FromStr for ShardArg {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = "expected K/N (shard K of N, numbered from 0, e.g. 0/4), auto, or auto/N";
        let s = s.trim();
        if s == "auto" {
            return Ok(ShardArg::Auto { count: None });
        }
        let Some((k, n)) = s.split_once('/') else {
            return err(format!("`{s}`: {usage}"));
        };
        let count = number("the shard count", n)?;
        if k.trim() == "auto" {
            if count == 0 {
                return err("the shard count must be at least 1, found 0");
            }
            return Ok(ShardArg::Auto { count: Some(count) });
        }
        let index =
            number("the shard index", k).map_err(|e| ShardError(format!("{e}; {usage}")))?;
        Ok(ShardArg::Fixed(Shard::new(index, count)?))
    }
}

/// Where a resolved shard came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSource {
    Flag,
    Slurm,
    Kubernetes,
}

impl fmt::Display for ShardSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShardSource::Flag => "--shard",
            ShardSource::Slurm => "the Slurm job array",
            ShardSource::Kubernetes => "the Kubernetes Indexed Job",
        })
    }
}

/// The environment variables `--shard auto` reads; set without `--shard`, they earn a warning.
pub const ENV_VARS: &[&str] = &["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"];

impl ShardArg {
    /// The shard this process audits. `K/N` is used as given (the environment is not read).
    ///
    /// `auto` with a Slurm job array (`SLURM_ARRAY_TASK_ID` set): array indices may start anywhere and
    /// have a step (`--array=1-3`, `--array=10-20:5`), so `K = (SLURM_ARRAY_TASK_ID -
    /// SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP` and `N = SLURM_ARRAY_TASK_COUNT` (`auto/N` must
    /// agree). An array that is not a regular range (`--array=1,5,9,20`) is refused, and so is plain
    /// `auto` in an array of one task whose id is not 0 (`sbatch --array=1`, a task resubmitted alone:
    /// it would be shard 0 of 1).
    ///
    /// `auto/N` in a Kubernetes Indexed Job: `K = JOB_COMPLETION_INDEX` (0 .. completions - 1); `N`
    /// must be given because a pod is not told the number of completions.
    ///
    /// Slurm wins when both are set. `env` looks a variable up (`std::env::var(..).ok()` in the binary).
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Shard, ShardSource), ShardError> {
        let given = match *self {
            ShardArg::Fixed(s) => return Ok((s, ShardSource::Flag)),
            ShardArg::Auto { count } => count,
        };
        let var = |name: &str| -> Result<Option<u32>, ShardError> {
            env(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| number(name, &v))
                .transpose()
        };
        if let Some(id) = var("SLURM_ARRAY_TASK_ID")? {
            let min = var("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = var("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let tasks = var("SLURM_ARRAY_TASK_COUNT")?;
            let count = match (given, tasks) {
                (Some(n), Some(t)) if n != t => {
                    return err(format!(
                        "--shard auto/{n}, but the Slurm job array has {t} tasks (SLURM_ARRAY_TASK_COUNT): \
                         submit it with --array=0-{} or fix N",
                        n.saturating_sub(1)
                    ))
                }
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => {
                    return err(
                        "--shard auto: SLURM_ARRAY_TASK_COUNT is not set (an old Slurm?): give the number of \
                         shards with --shard auto/N",
                    )
                }
            };
            // `sbatch --array=1` resubmitting task 1 of a larger array: with the count taken from the
            // array it would be shard 0 of 1, the whole test set, into another file.
            if given.is_none() && count == 1 && id != 0 {
                return err(format!(
                    "--shard auto in a job array of one task (task id {id}): that would be shard 0 of 1, the \
                     whole test set; to rerun one task of a larger array give the shard with its count \
                     (--shard K/N, e.g. {id}/N when task ids are the shard indices), or audit the whole set \
                     without --shard"
                ));
            }
            if id < min || (id - min) % step != 0 {
                return err(format!(
                    "SLURM_ARRAY_TASK_ID {id} is not on the array's range (minimum {min}, step {step})"
                ));
            }
            let index = (id - min) / step;
            let irregular = match var("SLURM_ARRAY_TASK_MAX")? {
                Some(max) => {
                    let span = max.saturating_sub(min);
                    span % step != 0 || span / step + 1 != count
                }
                None => false,
            };
            if irregular || index >= count {
                return err(format!(
                    "--shard auto: the Slurm job array is not a regular range of {count} tasks (task id {id}, \
                     SLURM_ARRAY_TASK_MIN {min}, SLURM_ARRAY_TASK_MAX {}, step {step}): submit it with \
                     --array=0-{} (any start and a step are fine, a list is not), or pass --shard K/N",
                    env("SLURM_ARRAY_TASK_MAX").unwrap_or_else(|| "unset".into()),
                    count.saturating_sub(1)
                ));
            }
            return Ok((Shard::new(index, count)?, ShardSource::Slurm));
        }
        if let Some(index) = var("JOB_COMPLETION_INDEX")? {
            let Some(count) = given else {
                return err(format!(
                    "--shard auto: JOB_COMPLETION_INDEX is {index} (a Kubernetes Indexed Job), but a pod is not \
                     told the number of completions: use --shard auto/N with N = the Job's completions"
                ));
            };
            let shard = Shard::new(index, count).map_err(|e| {
                ShardError(format!(
                    "JOB_COMPLETION_INDEX {index} with --shard auto/{count}: {e} (is completions {count}?)"
                ))
            })?;
            return Ok((shard, ShardSource::Kubernetes));
        }
        err("--shard auto: neither a Slurm job array (SLURM_ARRAY_TASK_ID) nor a Kubernetes Indexed Job \
             (JOB_COMPLETION_INDEX) is in the environment: give the shard as --shard K/N")
    }
}

/// The samples of `shard`, in their order, and how many samples there were in all. Every file is read
/// and hashed (in parallel) but none is decoded here; unreadable files go to shard 0.
pub fn select(samples: Vec<Sample>, shard: Shard) -> Selection {
    let all = samples.len();
    // The id of each file, or its name when it cannot be read (it then goes to shard 0).
    let keys: Vec<Result<String, String>> = samples
        .par_iter()
        .map(|s| match std::fs::read(&s.path) {
            Ok(bytes) => Ok(dataset::content_id(&bytes)),
            Err(_) => Err(s
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()),
        })
        .collect();
    let keep: Vec<bool> = keys
        .iter()
        .map(|k| match k {
            Ok(id) => shard.contains(id),
            Err(_) => shard.index == 0,
        })
        .collect();
    let mut sorted: Vec<String> = keys
        .into_iter()
        .map(|k| k.unwrap_or_else(|name| format!("unreadable:{name}")))
        .collect();
    sorted.sort();
    let mut h = Sha256::new();
    for k in &sorted {
        h.update(k.as_bytes());
        h.update(b"\n");
    }
    let own = samples
        .into_iter()
        .zip(keep)
        .filter_map(|(s, k)| k.then_some(s))
        .collect();
    Selection {
        own,
        all,
        fingerprint: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// What [`select`] keeps of a test set, and what it was cut from.
pub struct Selection {
    /// The shard's own samples.
    pub own: Vec<Sample>,
    /// How many samples the whole list had.
    pub all: usize,
    /// sha256 (hex) over the sorted ids of the whole list (`unreadable:<file name>` for a file that
    /// cannot be read): every shard of one test set gets the same value, whatever its paths or order.
    pub fingerprint: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(s: &str) -> Result<ShardArg, String> {
        s.parse::<ShardArg>().map_err(|e| e.0)
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn auto(count: Option<u32>, vars: &[(&str, &str)]) -> Result<(u32, u32), String> {
        ShardArg::Auto { count }
            .resolve(env(vars))
            .map(|(s, _)| (s.index, s.count))
            .map_err(|e| e.0)
    }

    #[test]
    fn parses_k_of_n_auto_and_auto_n() {
        assert_eq!(
            parse("2/3"),
            Ok(ShardArg::Fixed(Shard { index: 2, count: 3 }))
        );
        assert_eq!(
            parse(" 0/1 "),
            Ok(ShardArg::Fixed(Shard { index: 0, count: 1 }))
        );
        assert_eq!(parse("auto"), Ok(ShardArg::Auto { count: None }));
        assert_eq!(parse("auto/8"), Ok(ShardArg::Auto { count: Some(8) }));
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let e = parse("3/3").unwrap_err();
        assert!(
            e.contains("out of range") && e.contains("numbered from 0") && e.contains("2/3"),
            "{e}"
        );
        let e = parse("5/3").unwrap_err();
        assert!(e.contains("0 to 2"), "{e}");
        assert!(parse("0/0").unwrap_err().contains("at least 1"));
        assert!(parse("auto/0").unwrap_err().contains("at least 1"));
        assert!(parse("a/3")
            .unwrap_err()
            .contains("`a` is not a whole number"));
        assert!(parse("1/x")
            .unwrap_err()
            .contains("`x` is not a whole number"));
        assert!(parse("-1/3").unwrap_err().contains("not a whole number"));
        assert!(parse("2").unwrap_err().contains("expected K/N"));
        assert!(parse("").unwrap_err().contains("expected K/N"));
    }

    #[test]
    fn the_flag_wins_over_the_environment() {
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "9"),
        ]);
        let (s, src) = ShardArg::Fixed(Shard { index: 1, count: 2 })
            .resolve(slurm)
            .unwrap();
        assert_eq!((s.index, s.count, src), (1, 2, ShardSource::Flag));
    }

    #[test]
    fn slurm_arrays_from_zero_from_one_and_with_a_step() {
        let task = |id: &str, min: &str, max: &str, step: &str, count: &str| {
            auto(
                None,
                &[
                    ("SLURM_ARRAY_TASK_ID", id),
                    ("SLURM_ARRAY_TASK_MIN", min),
                    ("SLURM_ARRAY_TASK_MAX", max),
                    ("SLURM_ARRAY_TASK_STEP", step),
                    ("SLURM_ARRAY_TASK_COUNT", count),
                ],
            )
        };
        // --array=0-2
        assert_eq!(task("0", "0", "2", "1", "3"), Ok((0, 3)));
        assert_eq!(task("2", "0", "2", "1", "3"), Ok((2, 3)));
        // --array=1-3: ids 1, 2, 3 are shards 0, 1, 2
        assert_eq!(task("1", "1", "3", "1", "3"), Ok((0, 3)));
        assert_eq!(task("3", "1", "3", "1", "3"), Ok((2, 3)));
        // --array=10-20:5: ids 10, 15, 20
        assert_eq!(task("15", "10", "20", "5", "3"), Ok((1, 3)));
        assert_eq!(task("20", "10", "20", "5", "3"), Ok((2, 3)));
        // --array=1,5,9,20: not a regular range
        let e = task("5", "1", "20", "1", "4").unwrap_err();
        assert!(
            e.contains("not a regular range") && e.contains("--shard K/N"),
            "{e}"
        );
        let e = task("5", "1", "20", "4", "4").unwrap_err();
        assert!(e.contains("not a regular range"), "{e}");
        // one task resubmitted alone (`sbatch --array=1`): not "shard 0 of 1"
        let e = task("1", "1", "1", "1", "1").unwrap_err();
        assert!(
            e.contains("one task") && e.contains("shard 0 of 1") && e.contains("--shard K/N"),
            "{e}"
        );
        assert_eq!(task("0", "0", "0", "1", "1"), Ok((0, 1)));
        // an id off the step
        assert!(task("12", "10", "20", "5", "3")
            .unwrap_err()
            .contains("not on the array's range"));
        // N given and in agreement, or not
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert_eq!(auto(Some(3), &vars), Ok((0, 3)));
        let e = auto(Some(4), &vars).unwrap_err();
        assert!(e.contains("auto/4") && e.contains("3 tasks"), "{e}");
        // no count anywhere
        let e = auto(None, &[("SLURM_ARRAY_TASK_ID", "0")]).unwrap_err();
        assert!(e.contains("SLURM_ARRAY_TASK_COUNT"), "{e}");
        assert_eq!(auto(Some(2), &[("SLURM_ARRAY_TASK_ID", "1")]), Ok((1, 2)));
        let e = auto(
            None,
            &[
                ("SLURM_ARRAY_TASK_ID", "x1"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
            ],
        )
        .unwrap_err();
        assert!(e.contains("SLURM_ARRAY_TASK_ID `x1`"), "{e}");
    }

    #[test]
    fn kubernetes_indexed_jobs_need_n() {
        assert_eq!(auto(Some(3), &[("JOB_COMPLETION_INDEX", "2")]), Ok((2, 3)));
        let e = auto(None, &[("JOB_COMPLETION_INDEX", "2")]).unwrap_err();
        assert!(e.contains("auto/N"), "{e}");
        let e = auto(Some(2), &[("JOB_COMPLETION_INDEX", "2")]).unwrap_err();
        assert!(e.contains("completions 2"), "{e}");
        // Slurm wins when both are set
        let both = [
            ("JOB_COMPLETION_INDEX", "0"),
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        let (s, src) = ShardArg::Auto { count: None }.resolve(env(&both)).unwrap();
        assert_eq!((s.index, src), (1, ShardSource::Slurm));
        let e = auto(None, &[]).unwrap_err();
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID") && e.contains("JOB_COMPLETION_INDEX"),
            "{e}"
        );
    }

    #[test]
    fn the_rule_is_the_leading_64_bits_mod_n() {
        let id = format!("{:016x}{}", 1_000_003u64, "f".repeat(48));
        assert_eq!(shard_of(&id, 7), (1_000_003 % 7) as u32);
        assert_eq!(shard_of(&"ff".repeat(32), 1), 0);
        // the sha256 of empty input: e3b0c44298fc1c14...
        let empty = dataset::content_id(b"");
        assert_eq!(shard_of(&empty, 10), (0xe3b0c44298fc1c14u64 % 10) as u32);
        // every id is in exactly one shard, and shards are roughly even
        let n = 5;
        let mut sizes = vec![0; n as usize];
        for i in 0..2000u32 {
            let id = dataset::content_id(&i.to_le_bytes());
            let owners: Vec<u32> = (0..n)
                .filter(|&k| Shard { index: k, count: n }.contains(&id))
                .collect();
            assert_eq!(owners.len(), 1);
            sizes[owners[0] as usize] += 1;
        }
        assert!(sizes.iter().all(|&s| (300..500).contains(&s)), "{sizes:?}");
    }

    #[test]
    fn select_partitions_files_without_decoding_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut samples = Vec::new();
        for i in 0..30 {
            let p = dir.path().join(format!("f{i}.jpg"));
            // not images: select must not care
            std::fs::write(&p, format!("bytes {i}")).unwrap();
            samples.push(Sample {
                path: p,
                label: None,
            });
        }
        samples.push(Sample {
            path: dir.path().join("missing.jpg"),
            label: None,
        });
        let mut seen = Vec::new();
        let mut fingerprints = Vec::new();
        for k in 0..3 {
            let Selection {
                own,
                all,
                fingerprint,
            } = select(samples.clone(), Shard::new(k, 3).unwrap());
            assert_eq!(all, 31);
            fingerprints.push(fingerprint);
            for s in &own {
                if s.path.ends_with("missing.jpg") {
                    assert_eq!(k, 0, "an unreadable file goes to shard 0");
                } else {
                    let id = dataset::content_id(&std::fs::read(&s.path).unwrap());
                    assert_eq!(shard_of(&id, 3), k);
                }
            }
            seen.extend(own.into_iter().map(|s| s.path));
        }
        // Every shard of one list records the same list; the order of the files does not matter.
        assert!(fingerprints.iter().all(|f| f == &fingerprints[0]));
        let mut reversed = samples.clone();
        reversed.reverse();
        assert_eq!(
            select(reversed, Shard::new(0, 3).unwrap()).fingerprint,
            fingerprints[0]
        );
        assert_ne!(
            select(samples[1..].to_vec(), Shard::new(0, 3).unwrap()).fingerprint,
            fingerprints[0]
        );
        seen.sort();
        let mut want: Vec<_> = samples.into_iter().map(|s| s.path).collect();
        want.sort();
        assert_eq!(seen, want, "each file in exactly one shard");
    }
}
