//! The read side on a real audit database: `query` (read-only SQL, suspicious images, one image),
//! `export` (CSV columns and row counts, quoting, spreadsheet-safe text) and the leakage check.
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::support::cli::{ok, run_cheap};
use super::support::db::count;
use super::support::images::{leaked_copy, test_and_training_set};
use super::support::tempdir;

/// Class names as the data uses them: the second one starts with `=`, as a spreadsheet formula would.
const CLASSES: [&str; 2] = ["no", "=yes"];

struct Audited {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db: PathBuf,
}

fn tool(root: &Path, args: &[&str]) -> std::process::Output {
    run_cheap(root, &CLASSES, args)
}

/// `query --db DB ARGS...` on the audited database.
fn query(a: &Audited, args: &[&str]) -> std::process::Output {
    let db = a.db.to_str().unwrap();
    tool(&a.root, &[&["query", "--db", db], args].concat())
}

/// Three real Br35H test images per class (one renamed with a comma and quotes), audited with cheap
/// sample counts; the training folder holds two other images per class plus a re-encoded copy (PNG,
/// so other bytes, same picture) of one test image: a planted leak.
fn audited() -> Audited {
    let dir = tempdir();
    let root = dir.path().join("data");
    let [_, yes] = test_and_training_set(&root, CLASSES, 3, 2, |class, i| {
        (i == 0 && class == "no").then(|| "scan, \"axial\" 1.jpg".to_string())
    });
    leaked_copy(&yes[1], &root.join("Training/=yes/leaked-copy.png"));
    let db = dir.path().join("audit.sqlite");
    let out = tool(
        &root,
        &["audit", "--db", db.to_str().unwrap(), "--run", "night-1"],
    );
    let stdout = ok(out);
    assert!(stdout.contains("1 near-duplicate(s)"), "{stdout}");
    Audited {
        _dir: dir,
        root,
        db,
    }
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn query_sql_is_read_only_and_the_database_is_unchanged() {
    let a = audited();
    let before = sha256(&a.db);
    let rows = count(
        &Connection::open(&a.db).unwrap(),
        "SELECT count(*) FROM predictions",
    );
    for statement in [
        "DELETE FROM predictions",
        "UPDATE runs SET status = 'failed'",
        "DROP VIEW v_suspicious",
        "INSERT INTO errors (run_id, path, stage, message) VALUES ('night-1', 'x', 'decode', 'y')",
        "SELECT 1; DELETE FROM predictions",
        "PRAGMA user_version = 99",
    ] {
        let out = query(&a, &["sql", statement]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{statement}: accepted");
        assert!(
            err.contains("read-only")
                || err.contains("readonly")
                || err.contains("one statement")
                || err.contains("Multiple"),
            "{statement}: {err}"
        );
    }
    assert_eq!(sha256(&a.db), before, "the database file is byte-identical");
    let c = Connection::open(&a.db).unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM predictions"), rows);
    assert_eq!(rows, 6);
    // Reads work, in every format.
    let csv_out = ok(query(
        &a,
        &[
            "--format",
            "csv",
            "sql",
            "SELECT label, count(*) AS n FROM images GROUP BY label ORDER BY label",
        ],
    ));
    assert_eq!(csv_out, "label,n\n'=yes,3\nno,3\n");
    let json = ok(query(
        &a,
        &["--format", "json", "sql", "SELECT count(*) AS n FROM maps"],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["n"], serde_json::json!(36));
}

/// The documented columns of each export file (docs/database.md, "Export files").
const EXPORT_COLUMNS: [(&str, &str); 7] = [
    ("metrics.csv", "run_id,image_id,path,label,predicted,confidence,correct,method,mass_inside,mass_background,mass_border,concentration_inside,concentration_border,top1_inside,top5_inside,gini,empty,completeness_error,segments,agreement,flagged,seconds"),
    ("predictions.csv", "run_id,image_id,path,label,predicted,confidence,target,correct,width,height,brain_area_fraction,mask_fallback,train_distance,near_duplicate,train_nearest_path,p_no,p_=yes"),
    ("agreement.csv", "run_id,image_id,path,label,method_a,method_b,spearman,iou_top10"),
    ("bias_summary.csv", "label,correct,method,images,mean_mass_background,median_mass_background,mean_mass_border,median_mass_border,share_flagged,mean_agreement,median_agreement"),
    ("errors.csv", "run_id,image_id,path,stage,message,at"),
    ("localisation.csv", "run_id,image_id,path,label,predicted,correct,method,outline_area,mass_on_tumor,tumor_concentration,pointing_hit,energy_pointing,iou_top_area"),
    ("localisation_summary.csv", "label,correct,method,images,median_outline_area,mean_mass_on_tumor,median_mass_on_tumor,pointing_rate,mean_energy_pointing,mean_iou_top_area"),
];

#[test]
fn export_writes_documented_csvs_with_the_databases_row_counts() {
    let a = audited();
    let out_dir = a.root.parent().unwrap().join("export");
    let stdout = ok(tool(
        &a.root,
        &[
            "export",
            "--db",
            a.db.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
    ));
    assert!(stdout.contains("metrics.csv"), "{stdout}");
    let c = Connection::open(&a.db).unwrap();
    let expected_rows = [
        count(&c, "SELECT count(*) FROM attribution_metrics"),
        count(&c, "SELECT count(*) FROM predictions"),
        count(&c, "SELECT count(*) FROM agreement"),
        count(
            &c,
            "SELECT count(*) FROM (SELECT DISTINCT label, correct, method FROM v_image_method)",
        ),
        count(&c, "SELECT count(*) FROM errors"),
        count(&c, "SELECT count(*) FROM localisation"),
        count(&c, "SELECT count(*) FROM v_localisation_summary"),
    ];
    assert_eq!(expected_rows[..3], [36, 6, 90]);
    for ((name, columns), rows) in EXPORT_COLUMNS.iter().zip(expected_rows) {
        let mut r = csv::Reader::from_path(out_dir.join(name)).unwrap();
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        let want: Vec<String> = columns.split(',').map(str::to_string).collect();
        assert_eq!(header, want, "{name}");
        let records: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        assert_eq!(records.len() as i64, rows, "{name}: rows");
    }
    // Round trip of a path with a comma and quotes; the formula-like class name is defused; numbers
    // stay numbers.
    let mut r = csv::Reader::from_path(out_dir.join("predictions.csv")).unwrap();
    let records: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    let paths: Vec<&str> = records.iter().map(|x| &x[2]).collect();
    assert!(
        paths.iter().any(|p| p.ends_with("scan, \"axial\" 1.jpg")),
        "{paths:?}"
    );
    let labels: Vec<&str> = records.iter().map(|x| &x[3]).collect();
    assert!(
        labels.contains(&"'=yes") && !labels.contains(&"=yes"),
        "{labels:?}"
    );
    for x in &records {
        let conf: f64 = x[5].parse().unwrap();
        assert!((0.5..=1.0).contains(&conf));
        let p: f64 = x[15].parse::<f64>().unwrap() + x[16].parse::<f64>().unwrap();
        assert!((p - 1.0).abs() < 1e-5, "probabilities sum to 1");
    }
    // The leak: one image, distance 0, near_duplicate 1; the others are far.
    let leaks: Vec<(&str, &str)> = records.iter().map(|x| (&x[12], &x[13])).collect();
    assert_eq!(
        leaks.iter().filter(|(_, d)| *d == "1").count(),
        1,
        "{leaks:?}"
    );
    assert!(
        leaks.iter().any(|(d, n)| *d == "0" && *n == "1"),
        "{leaks:?}"
    );
    assert!(
        leaks
            .iter()
            .filter(|(_, n)| *n == "0")
            .all(|(d, _)| d.parse::<u32>().unwrap() > 2),
        "{leaks:?}"
    );
    // Mean maps: one picture per class x method plus "all", and the grid.
    let maps = out_dir.join("mean-maps");
    assert!(maps.join("mean-maps.png").is_file());
    let pngs = std::fs::read_dir(&maps).unwrap().count();
    assert_eq!(pngs, 3 * 6 + 1, "{pngs} files in mean-maps");
}

#[test]
fn query_suspicious_matches_the_view_and_query_image_shows_everything() {
    let a = audited();
    let json = ok(query(
        &a,
        &["--format", "json", "suspicious", "--limit", "0"],
    ));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let c = Connection::open(&a.db).unwrap();
    let mut stmt = c
        .prepare("SELECT image_id, score, methods_flagged, confidently_wrong, methods_disagree FROM v_suspicious_images WHERE run_id = 'night-1' ORDER BY score DESC, location_ratio DESC, image_id")
        .unwrap();
    let view: Vec<(String, i64, i64, i64, i64)> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let cli: Vec<(String, i64, i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            let i = |k: &str| r[k].as_i64().unwrap();
            (
                r["image_id"].as_str().unwrap().to_string(),
                i("score"),
                i("methods_flagged"),
                i("confidently_wrong"),
                i("methods_disagree"),
            )
        })
        .collect();
    assert!(!cli.is_empty());
    assert_eq!(cli, view, "the CLI's default rules are the view's");
    assert!(cli.windows(2).all(|w| w[0].1 >= w[1].1), "sorted by score");
    for r in &rows {
        assert!(
            !r["reasons"].as_str().unwrap().is_empty(),
            "every row says why: {r}"
        );
    }
    // Stricter thresholds list fewer images; one method at a time works.
    let strict = ok(query(
        &a,
        &[
            "--format",
            "json",
            "suspicious",
            "--limit",
            "0",
            "--min-methods",
            "7",
            "--confidence",
            "1",
            "--agreement",
            "-1",
        ],
    ));
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&strict)
            .unwrap()
            .len(),
        0
    );
    let table = ok(query(&a, &["suspicious", "--method", "gradcam"]));
    assert!(table.starts_with("run night-1:"), "{table}");

    // One image by the end of its path: every section, the leak among them.
    // The planted copy lives in Training, so it is not an audited image.
    let out = query(&a, &["image", "leaked-copy.png"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no image"));
    let text = ok(query(&a, &["image", "axial\" 1.jpg"]));
    for section in [
        "image:",
        "prediction:",
        "leakage:",
        "methods:",
        "agreement:",
        "errors:",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    assert_eq!(
        text.matches("integrated_gradients").count(),
        1 + 5,
        "{text}"
    );
    let runs = ok(query(&a, &["runs"]));
    assert!(
        runs.contains("night-1") && runs.contains("finished"),
        "{runs}"
    );
}
