//! Sharded audits through the real binary: three shard processes (picked by --shard K/N, a Slurm array
//! with ids from 1, and a Kubernetes completion index), merged, give exactly the rows of one process.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::types::Value;
use rusqlite::Connection;

use super::support::cli::{
    self, assert_exit, assert_exit_for, assert_stderr, assert_stderr_for, assert_stdout, failed,
    text, CHEAP,
};
use super::support::db::one;
use super::support::images::{self, write_broken_jpeg};
use super::support::{assert_has_all, repo, tempdir};

/// The variables an array job sets, from which `--shard auto` picks the shard.
const ARRAY_JOB_VARS: [&str; 6] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
    "SLURM_ARRAY_TASK_COUNT",
    "JOB_COMPLETION_INDEX",
];

/// `c` without the array-job variables of the environment the tests run in.
fn clean(c: &mut Command) -> &mut Command {
    for v in ARRAY_JOB_VARS {
        c.env_remove(v);
    }
    c
}

/// The real binary with no array-job variables from the environment the tests run in.
fn bin(sets: &[&str]) -> Command {
    let mut c = cli::bin(sets);
    clean(&mut c);
    c
}

/// `per_class` real Br35H test images per class and one broken JPEG (it fails at decode, with an id).
fn real_set(root: &Path, per_class: usize) -> PathBuf {
    let set = images::real_set(root, per_class);
    write_broken_jpeg(&set.join("yes/broken.jpg"));
    set
}

/// Every row of `table` for run `r` (`images`: all rows), without the columns in `skip`, sorted.
fn rows(db: &Path, table: &str, skip: &[&str]) -> Vec<String> {
    run_rows(db, table, skip, "r")
}

/// Every row of `table` for run `run` (`images`: all rows), without the columns in `skip`, sorted.
fn run_rows(db: &Path, table: &str, skip: &[&str], run: &str) -> Vec<String> {
    let conn = Connection::open(db).unwrap();
    let cols: Vec<String> = conn
        .prepare(&format!("PRAGMA table_info({table})"))
        .unwrap()
        .query_map([], |r| r.get::<_, String>(1))
        .unwrap()
        .map(|c| c.unwrap())
        .filter(|c| !skip.contains(&c.as_str()))
        .collect();
    let filter = if table == "images" {
        String::new()
    } else {
        format!(" WHERE run_id = '{run}'")
    };
    let mut st = conn
        .prepare(&format!("SELECT {} FROM {table}{filter}", cols.join(", ")))
        .unwrap();
    let mut out: Vec<String> = st
        .query_map([], |r| {
            (0..cols.len())
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(|v| format!("{v:?}"))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    out.sort();
    out
}

/// The results of run `r`: every row of every result table; timings, error ids and times left out.
fn results(db: &Path) -> BTreeMap<&'static str, Vec<String>> {
    [
        ("images", &[][..]),
        ("run_images", &["seconds"][..]),
        ("predictions", &[][..]),
        ("attribution_metrics", &["seconds"][..]),
        ("agreement", &[][..]),
        ("maps", &[][..]),
        ("errors", &["id", "at"][..]),
    ]
    .into_iter()
    .map(|(t, skip)| (t, rows(db, t, skip)))
    .collect()
}

#[test]
fn three_shard_processes_merge_into_exactly_the_rows_of_one_process() {
    let dir = tempdir();
    let set = real_set(dir.path(), 4);
    let out_dir = dir.path().join("out");
    let output_dir = format!("output.dir={}", out_dir.display());
    let sets: Vec<&str> = CHEAP.iter().copied().chain([output_dir.as_str()]).collect();
    let audit = |extra: &[&str]| {
        let mut c = bin(&sets);
        // One libtorch thread each: three processes share this machine's cores.
        c.args([
            "--threads",
            "1",
            "audit",
            "--data",
            set.to_str().unwrap(),
            "--run",
            "r",
        ])
        .args(extra);
        c
    };

    // One process over the whole set.
    let single = dir.path().join("single.sqlite");
    let out = audit(&["--db", single.to_str().unwrap()]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "the broken file fails: {}",
        text(&out)
    );

    // Three shard processes at once, each told its shard another way; default database names.
    let mut by_flag = audit(&["--shard", "0/3"]);
    let mut slurm = audit(&["--shard", "auto"]);
    // `sbatch --array=1-3`: task id 2 is the second shard
    slurm.envs([
        ("SLURM_ARRAY_TASK_ID", "2"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_MAX", "3"),
        ("SLURM_ARRAY_TASK_STEP", "1"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
    ]);
    let mut k8s = audit(&["--shard", "auto/3"]);
    k8s.env("JOB_COMPLETION_INDEX", "2");
    let children: Vec<_> = [&mut by_flag, &mut slurm, &mut k8s]
        .into_iter()
        .map(|c| {
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let shards: Vec<PathBuf> = (0..3)
        .map(|k| out_dir.join(format!("audit.shard-{k}-of-3.sqlite")))
        .collect();
    let mut seen: Vec<String> = Vec::new();
    for (k, (out, db)) in outs.iter().zip(&shards).enumerate() {
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "shard {k}: {}",
            text(out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("shard {k} of 3: ")) && stdout.contains(" of 9 images"),
            "{stdout}"
        );
        assert!(db.is_file(), "shard {k} writes {}", db.display());
        let (index, count, total, status): (i64, i64, i64, String) = Connection::open(db)
            .unwrap()
            .query_row("SELECT shard_index, shard_count, images_total, status FROM runs WHERE run_id = 'r'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!((index, count, status.as_str()), (k as i64, 3, "finished"));
        let ids = rows(db, "run_images", &["run_id", "status", "seconds"]);
        assert_eq!(
            total,
            ids.len() as i64,
            "images_total is the shard's own count"
        );
        assert!(
            stdout.contains(&format!("shard {k} of 3: {total} of 9 images")),
            "{stdout}"
        );
        seen.extend(ids);
    }
    // The shards partition the set: every image in exactly one shard.
    seen.sort();
    let all = rows(&single, "run_images", &["run_id", "status", "seconds"]);
    assert_eq!(all.len(), 9);
    assert_eq!(seen, all);

    // Two of three: shard 1 is missing, the run is incomplete, exit code 5.
    let partial = dir.path().join("partial.sqlite");
    let merge = |into: &Path, shards: &[&PathBuf], extra: &[&str]| {
        cli::merge(bin(&[]), into, shards)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = merge(&partial, &[&shards[0], &shards[2]], &[]);
    assert_exit(&out, 5);
    assert_stderr(&out, &["shard 1 of 3 is missing"]);
    assert_eq!(
        one::<String>(&partial, "SELECT status FROM runs"),
        "interrupted"
    );
    let out = merge(&partial, &[&shards[0], &shards[2]], &["--allow-missing"]);
    assert_ne!(out.status.code(), Some(5), "{}", text(&out));
    assert!(
        out.status.code().is_some_and(|c| c == 0 || c == 3),
        "{}",
        text(&out)
    );

    // All three: the same rows as the single process (timings aside); exit 3 as the audit's.
    let merged = dir.path().join("merged.sqlite");
    let out = merge(&merged, &[&shards[2], &shards[0], &shards[1]], &[]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "complete, one image failed: {}",
        text(&out)
    );
    assert_stdout(
        &out,
        &["finished (complete: 3 of 3 shards), 8 of 9 images done, 1 failed"],
    );
    let want = results(&single);
    assert_eq!(want["maps"].len(), 8 * 6);
    assert_eq!(want["agreement"].len(), 8 * 15);
    assert_eq!(want["errors"].len(), 1);
    let got = results(&merged);
    for (table, rows) in &want {
        assert!(
            got[table] == *rows,
            "{table} differs between the merged shards and one process"
        );
    }
    let run = "SELECT status || ' ' || images_total || ' ' || shard_count || ' ' || coalesce(shard_index, '-') FROM runs";
    assert_eq!(one::<String>(&merged, run), "finished 9 3 -");
    assert_eq!(
        one::<String>(&merged, "SELECT config_yaml FROM runs"),
        one::<String>(&single, "SELECT config_yaml FROM runs")
    );

    // Merging again changes nothing.
    let counts = |db: &Path| {
        [
            "runs",
            "run_shards",
            "images",
            "run_images",
            "predictions",
            "attribution_metrics",
            "agreement",
            "maps",
            "errors",
        ]
        .map(|t| one::<i64>(db, &format!("SELECT count(*) FROM {t}")))
    };
    let before = (
        counts(&merged),
        results(&merged),
        rows(&merged, "errors", &[]),
    );
    let out = merge(&merged, &[&shards[0], &shards[1], &shards[2]], &[]);
    assert_exit(&out, 3);
    assert_eq!(
        (
            counts(&merged),
            results(&merged),
            rows(&merged, "errors", &[])
        ),
        before
    );
}

#[test]
fn merge_refuses_shards_of_another_config_and_bad_shard_values_are_clear_errors() {
    let dir = tempdir();
    let set = real_set(dir.path(), 1);
    let shard = |k: &str, lime: &str| {
        let db = dir.path().join(format!("s{k}.sqlite"));
        let out = cli::audit(
            bin(&[&format!("explain.lime.samples={lime}")]),
            &set,
            &db,
            "r",
        )
        .args(["--methods", "gradcam", "--shard", &format!("{k}/2")])
        .output()
        .unwrap();
        assert!(matches!(out.status.code(), Some(0 | 3)), "{}", text(&out));
        db
    };
    let a = shard("0", "24");
    let b = shard("1", "25");
    let into = dir.path().join("merged.sqlite");
    let out = cli::merge(bin(&[]), &into, &[&a, &b]).output().unwrap();
    assert_exit(&out, 1);
    assert_has_all(
        &cli::stderr(&out),
        &[
            "differ in their config",
            "s0.sqlite",
            "s1.sqlite",
            "samples: 24",
            "samples: 25",
        ],
    );
    assert!(!into.exists(), "nothing written when refused");

    // Bad values, before any work.
    let data = set.to_str().unwrap();
    for (value, expect) in [
        ("3/3", "out of range"),
        ("1/0", "at least 1"),
        ("x/3", "`x` is not a whole number"),
        ("2", "expected K/N"),
    ] {
        let out = bin(&[])
            .args(["audit", "--data", data, "--shard", value])
            .output()
            .unwrap();
        let err = failed(&out);
        assert!(
            err.contains("--shard") && err.contains(expect),
            "{value}: {err}"
        );
    }
    let out = bin(&[])
        .args(["audit", "--data", data, "--shard", "auto"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert_has_all(
        &cli::stderr(&out),
        &["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"],
    );
    let out = bin(&[])
        .args(["audit", "--data", data, "--shard", "auto"])
        .env("JOB_COMPLETION_INDEX", "1")
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert_stderr(&out, &["--shard auto/N"]);
}

/// A refused `--shard auto` (a list array, a count that disagrees with the array, one task of a larger
/// array resubmitted alone) and a Slurm array the template cannot map to shards fail the same way in
/// every task: exit 2, before any work, saying that resubmitting cannot help. submit.sh refuses bad
/// values before it asks Slurm anything.
#[test]
fn shard_refusals_exit_2_before_any_work() {
    let dir = tempdir();
    let set = real_set(dir.path(), 1);
    let data = set.to_str().unwrap();
    let out_dir = dir.path().join("out");
    let output_dir = format!("output.dir={}", out_dir.display());
    let list_array: Vec<(&str, String)> = [("5", "1", "20", "4")]
        .iter()
        .flat_map(|(id, min, max, count)| {
            [
                ("SLURM_ARRAY_TASK_ID", id.to_string()),
                ("SLURM_ARRAY_TASK_MIN", min.to_string()),
                ("SLURM_ARRAY_TASK_MAX", max.to_string()),
                ("SLURM_ARRAY_TASK_STEP", "1".to_string()),
                ("SLURM_ARRAY_TASK_COUNT", count.to_string()),
            ]
        })
        .collect();
    for (shard, vars, expect) in [
        ("auto", list_array, "not a regular range"),
        ("auto/4", array_task(1, 0, 2).to_vec(), "3 tasks"),
        ("auto", array_task(1, 1, 1).to_vec(), "shard 0 of 1"),
    ] {
        let out = bin(&[&output_dir])
            .args(["audit", "--data", data, "--run", "r", "--shard", shard])
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        let what = format!("--shard {shard}");
        assert_exit_for(&out, 2, &what);
        assert_stderr_for(&out, &[expect], &what);
        assert!(!out_dir.exists(), "nothing written: {}", text(&out));
    }

    // The template: task ids must be the shard indices, SHARDS must be given, and it runs in an array.
    let exe = env!("CARGO_BIN_EXE_tumor-audit");
    let template = |shards: Option<&str>, vars: &[(&'static str, String)]| {
        let mut c = Command::new("bash");
        clean(&mut c)
            .arg(repo("deploy/slurm/audit-shard.sbatch"))
            .current_dir(repo("."))
            .envs([("RUN", "r"), ("TUMOR_AUDIT", exe)])
            .env("OUT", &out_dir)
            .env("AUDIT_ARGS", format!("--data {data}"))
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
        match shards {
            Some(n) => c.env("SHARDS", n),
            None => c.env_remove("SHARDS"),
        };
        c.output().unwrap()
    };
    for (shards, vars, expect) in [
        (
            Some("3"),
            array_task(3, 1, 3).to_vec(),
            "task ids are the shard indices 0..2",
        ),
        (None, array_task(0, 0, 2).to_vec(), "set SHARDS"),
        (Some("x"), array_task(0, 0, 2).to_vec(), "set SHARDS"),
        (Some("3"), Vec::new(), "not a job array task"),
    ] {
        let out = template(shards, &vars);
        let what = format!("{shards:?} {vars:?}");
        assert_exit_for(&out, 2, &what);
        assert_stderr_for(&out, &[expect, "resubmitting cannot help"], &what);
        assert!(!out_dir.exists(), "nothing written: {}", text(&out));
    }

    // submit.sh: bad values, before any Slurm command.
    for args in [
        &["0"][..],
        &["-c", "x", "3"],
        &["-m", "8GB", "3"],
        &["3", "r", "extra"],
    ] {
        let out = Command::new("bash")
            .arg(repo("deploy/slurm/submit.sh"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_exit_for(&out, 2, &format!("submit.sh {args:?}"));
    }
}

fn yaml(rel: &str) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(repo(rel)).unwrap()).unwrap()
}

fn env_value(container: &serde_yaml_ng::Value, name: &str) -> String {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no env {name}"))
        .to_string()
}

#[test]
fn deploy_templates_agree_with_each_other_and_with_the_binary() {
    // Slurm: every #SBATCH line before the first command (sbatch stops reading there), known options.
    for script in [
        "deploy/slurm/audit-shard.sbatch",
        "deploy/slurm/merge.sbatch",
    ] {
        let body = std::fs::read_to_string(repo(script)).unwrap();
        let first_command = body
            .lines()
            .position(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .unwrap();
        for (i, line) in body
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains("SBATCH --"))
        {
            if !line.starts_with("#SBATCH") {
                continue; // a comment that mentions one
            }
            assert!(
                i < first_command,
                "{script}:{}: #SBATCH after the first command",
                i + 1
            );
            let option = line["#SBATCH ".len()..].split('=').next().unwrap();
            assert!(
                [
                    "--job-name",
                    "--array",
                    "--ntasks",
                    "--cpus-per-task",
                    "--mem",
                    "--time",
                    "--output"
                ]
                .contains(&option),
                "{script}: {line}"
            );
        }
        let out = Command::new("bash")
            .arg("-n")
            .arg(repo(script))
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", text(&out));
    }
    let merge_sbatch = std::fs::read_to_string(repo("deploy/slurm/merge.sbatch")).unwrap();
    let pattern = |k: &str, n: &str| {
        tumor_audit::shard::Shard { index: 7, count: 9 }
            .db_file_name()
            .replace('7', k)
            .replace('9', n)
    };
    assert!(
        merge_sbatch.contains(&pattern("$k", "$SHARDS")),
        "merge.sbatch names the shard files as audit does"
    );

    // Kubernetes: an Indexed Job of SHARDS completions, the merge Job with the same run, one volume.
    let job = yaml("deploy/kubernetes/audit-shards.yaml");
    let merge = yaml("deploy/kubernetes/merge.yaml");
    let pvc = yaml("deploy/kubernetes/shared-volume.yaml");
    assert_eq!(job["spec"]["completionMode"].as_str(), Some("Indexed"));
    let audit = &job["spec"]["template"]["spec"]["containers"][0];
    let merger = &merge["spec"]["template"]["spec"]["containers"][0];
    let shards = env_value(audit, "SHARDS");
    assert_eq!(
        job["spec"]["completions"].as_u64().map(|n| n.to_string()),
        Some(shards.clone())
    );
    assert_eq!(
        job["spec"]["parallelism"].as_u64().map(|n| n.to_string()),
        Some(shards.clone())
    );
    assert_eq!(env_value(merger, "SHARDS"), shards);
    assert_eq!(env_value(merger, "RUN"), env_value(audit, "RUN"));
    assert!(audit["args"][0]
        .as_str()
        .unwrap()
        .contains("--shard \"auto/$SHARDS\""));
    assert!(merger["args"][0]
        .as_str()
        .unwrap()
        .contains(&pattern("$k", "$SHARDS")));
    for j in [&job, &merge] {
        let spec = &j["spec"]["template"]["spec"];
        assert_eq!(spec["restartPolicy"].as_str(), Some("Never"));
        assert_eq!(
            spec["volumes"][0]["persistentVolumeClaim"]["claimName"],
            pvc["metadata"]["name"]
        );
    }
}

/// The rows of `run`'s shortcut check (its verdict), timings and creation times left out.
fn verdict(db: &Path, run: &str) -> BTreeMap<&'static str, Vec<String>> {
    [
        (
            "shortcut_checks",
            &["created_at", "seconds", "acquisition_seconds"][..],
        ),
        ("shortcut_methods", &[][..]),
        ("shortcut_regions", &[][..]),
        ("shortcut_flags", &[][..]),
        ("shortcut_tests", &[][..]),
        ("acquisition_properties", &[][..]),
        ("acquisition_tests", &[][..]),
    ]
    .into_iter()
    .map(|(t, skip)| (t, run_rows(db, t, skip, run)))
    .collect()
}

/// The variables Slurm sets in a task of an array submitted with `--array=MIN-MAX` (or one id).
fn array_task(id: u32, min: u32, max: u32) -> [(&'static str, String); 5] {
    [
        ("SLURM_ARRAY_TASK_ID", id.to_string()),
        ("SLURM_ARRAY_TASK_MIN", min.to_string()),
        ("SLURM_ARRAY_TASK_MAX", max.to_string()),
        ("SLURM_ARRAY_TASK_STEP", "1".to_string()),
        ("SLURM_ARRAY_TASK_COUNT", (max - min + 1).to_string()),
    ]
}

/// Runs the Slurm scripts with the variables Slurm sets for `--array=0-2` (task 1 "fails": it is left
/// out, the merge reports it, then it is resubmitted alone as `sbatch --array=1` and lands in shard 1
/// of 3), and the Kubernetes containers' scripts with JOB_COMPLETION_INDEX, each against the real
/// binary, then their merge steps. Both merged runs carry the verdict (the merge steps end with the
/// shortcut check), the same as a single-process audit's.
#[test]
fn deploy_scripts_run_as_slurm_and_kubernetes_would_run_them() {
    let dir = tempdir();
    let set = real_set(dir.path(), 1);
    let cheap = "--methods gradcam,guided_backprop";
    let exe = env!("CARGO_BIN_EXE_tumor-audit");
    let clean = |c: &mut Command| {
        clean(c).current_dir(repo("."));
    };

    // One process over the whole set, the shortcut check at its end: the verdict to get back. A --set
    // that the check depends on (the seed of its random controls) is given to the audit only: the
    // merge step's check must take it from the config stored with the run.
    let seeded = "explain.seed=7";
    let single = dir.path().join("single.sqlite");
    let out = cli::audit(bin(&[seeded]), &set, &single, "slurm")
        .args(cheap.split(' '))
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", text(&out));
    let want = verdict(&single, "slurm");
    assert_eq!(
        want["shortcut_checks"].len(),
        1,
        "the single run has a verdict"
    );

    // Slurm, `--array=0-2`: task ids are the shard indices.
    let out_dir = dir.path().join("slurm-out");
    let task = |vars: &[(&'static str, String)]| {
        let mut c = Command::new("bash");
        clean(&mut c);
        c.arg(repo("deploy/slurm/audit-shard.sbatch"))
            .envs([
                ("RUN", "slurm"),
                ("SHARDS", "3"),
                ("TUMOR_AUDIT", exe),
                ("SLURM_CPUS_PER_TASK", "1"),
            ])
            .env("OUT", &out_dir)
            .env(
                "AUDIT_ARGS",
                format!("--data {} {cheap} --set {seeded}", set.display()),
            )
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    let children: Vec<_> = [0, 2]
        .map(|id| (id, task(&array_task(id, 0, 2)).spawn().unwrap()))
        .into_iter()
        .collect();
    for (id, c) in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "task {id}: {}", text(&out));
        assert_stdout(&out, &[&format!("shard {id} of 3: ")]);
    }
    let merge = || {
        let mut merge = Command::new("bash");
        clean(&mut merge);
        merge
            .arg(repo("deploy/slurm/merge.sbatch"))
            .envs([("RUN", "slurm"), ("SHARDS", "3"), ("TUMOR_AUDIT", exe)])
            .env("OUT", &out_dir)
            .output()
            .unwrap()
    };
    // Task 1 never ran: the merge says so and fails, with no verdict for a part of the set.
    let out = merge();
    assert_exit(&out, 5);
    assert_has_all(
        &text(&out),
        &[
            "shard 1 of 3 is missing",
            "resubmit the failed shard tasks alone",
        ],
    );
    let merged = out_dir.join("audit.sqlite");
    assert_eq!(
        one::<i64>(&merged, "SELECT count(*) FROM shortcut_checks"),
        0
    );
    // Resubmitted alone, the natural way (`sbatch --array=1`): shard 1 of 3, not shard 0 of 1.
    let out = task(&array_task(1, 1, 1)).output().unwrap();
    assert!(out.status.success(), "task 1 again: {}", text(&out));
    assert_stdout(&out, &["shard 1 of 3: "]);
    assert!(out_dir.join("audit.shard-1-of-3.sqlite").is_file());
    assert!(!out_dir.join("audit.shard-0-of-1.sqlite").exists());
    let out = merge();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("verdict: "), "{}", text(&out));
    assert_eq!(
        one::<String>(&merged, "SELECT status || ' ' || images_total FROM runs"),
        "finished 3"
    );
    assert_eq!(
        verdict(&merged, "slurm"),
        want,
        "the merged run carries the single run's verdict"
    );

    // Kubernetes: the containers' scripts with /shared in the temp dir and tumor-audit on PATH.
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(shared.join("data")).unwrap();
    std::fs::rename(&set, shared.join("data/Testing")).unwrap();
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(exe, bin_dir.join("tumor-audit")).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = |rel: &str| {
        let doc = yaml(rel);
        let c = &doc["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["command"][0].as_str(), Some("/bin/sh"));
        c["args"][0]
            .as_str()
            .unwrap()
            .replace("/shared", shared.to_str().unwrap())
    };
    let pod = |script: &str, index: Option<u32>| {
        let mut c = Command::new("/bin/sh");
        clean(&mut c);
        c.args(["-c", script])
            .envs([
                ("RUN", "k8s"),
                ("SHARDS", "3"),
                ("THREADS", "1"),
                ("AUDIT_ARGS", cheap),
            ])
            .env("PATH", &path);
        if let Some(k) = index {
            c.env("JOB_COMPLETION_INDEX", k.to_string());
        }
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    let audit = script("deploy/kubernetes/audit-shards.yaml");
    let pods: Vec<_> = (0..3)
        .map(|k| pod(&audit, Some(k)).spawn().unwrap())
        .collect();
    for (k, p) in pods.into_iter().enumerate() {
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success(), "pod {k}: {}", text(&out));
        assert_stdout(&out, &[&format!("shard {k} of 3: ")]);
    }
    let out = pod(&script("deploy/kubernetes/merge.yaml"), None)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let merged_k8s = shared.join("out/audit.sqlite");
    assert_eq!(
        one::<String>(
            &merged_k8s,
            "SELECT status || ' ' || images_total FROM runs"
        ),
        "finished 3"
    );
    // Both ways hold the same rows.
    let counts = |db: &Path| {
        ["predictions", "attribution_metrics", "maps"]
            .map(|t| one::<i64>(db, &format!("SELECT count(*) FROM {t}")))
    };
    assert_eq!(counts(&merged), counts(&merged_k8s));
    assert_eq!(counts(&merged), [2, 4, 4]);
    // The Kubernetes merge ends with the shortcut check too.
    assert_eq!(verdict(&merged_k8s, "k8s")["shortcut_checks"].len(), 1);
    assert_eq!(
        one::<String>(
            &merged_k8s,
            "SELECT verdict FROM shortcut_checks WHERE run_id = 'k8s'"
        ),
        one::<String>(
            &merged,
            "SELECT verdict FROM shortcut_checks WHERE run_id = 'slurm'"
        )
    );
}
