//! Acquisition-shortcut known answers on real Br35H slices: small models trained, as the planted-marker
//! models are, where every tumour image comes from a "different scanner" (added Gaussian noise, brighter
//! grey levels with less contrast, a blur, a lower source resolution), and a clean model trained on the
//! same images. The shortcut check must confirm each planted acquisition shortcut with its kind, store
//! the class-difference table that shows it, carry it into `query shortcuts`, the export, the report
//! and `diff --fail-on`, and find nothing on the clean model. Nothing in the check knows what was planted.
use image::{imageops::FilterType, GrayImage, Luma};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rusqlite::Connection;

use super::shortcuts::{audit, audit_with, make_set_with, run, sets, slice, SIZE};
use super::util::{bin, ok, tempdir};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Plant {
    Noise,
    Intensity,
    Blur,
    Resolution,
}

impl Plant {
    const ALL: [Plant; 4] = [
        Plant::Noise,
        Plant::Intensity,
        Plant::Blur,
        Plant::Resolution,
    ];

    /// The kind the check must name.
    fn kind(self) -> &'static str {
        match self {
            Plant::Noise => "noise",
            Plant::Intensity => "intensity",
            Plant::Blur => "sharpness",
            Plant::Resolution => "resolution",
        }
    }

    /// A `yes` slice as the other scanner gives it.
    fn apply(self, img: GrayImage, name: &str) -> GrayImage {
        match self {
            // Gaussian noise, sigma 12 grey levels, seeded per file.
            Plant::Noise => {
                let seed = name
                    .bytes()
                    .fold(7u64, |h, b| h.wrapping_mul(31) ^ b as u64);
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let n = Normal::new(0.0f32, 12.0).unwrap();
                GrayImage::from_fn(img.width(), img.height(), |x, y| {
                    let v = img.get_pixel(x, y).0[0] as f32 + n.sample(&mut rng);
                    Luma([v.round().clamp(0.0, 255.0) as u8])
                })
            }
            // Another windowing: 40 + 0.8 v (grey background, less contrast).
            Plant::Intensity => GrayImage::from_fn(img.width(), img.height(), |x, y| {
                Luma([(40.0 + 0.8 * img.get_pixel(x, y).0[0] as f32).round() as u8])
            }),
            // A softer reconstruction kernel: Gaussian blur, sigma 1.2 px.
            Plant::Blur => image::imageops::blur(&img, 1.2),
            // A scanner with a smaller matrix: 16 x 16 files (the audit resizes them to 40 x 40).
            Plant::Resolution => image::imageops::resize(&img, 16, 16, FilterType::Triangle),
        }
    }
}

/// The acquisition rows of a run: (kind, from, to, verdict, rate, control rate, summary).
type TestRow = (
    String,
    String,
    String,
    String,
    Option<f64>,
    Option<f64>,
    String,
);

fn tests(c: &Connection, run: &str) -> Vec<TestRow> {
    c.prepare(
        "SELECT kind, from_class, to_class, verdict, rate, control_rate, summary FROM acquisition_tests \
         WHERE run_id = ?1 ORDER BY test",
    )
    .unwrap()
    .query_map([run], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
        ))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

/// The class-difference table of a run: (property, median_a, median_b, separation), rounded to 3
/// decimals as `query`, the export and the report show them, in their order.
fn class_differences(
    c: &Connection,
    run: &str,
) -> Vec<(String, Option<f64>, Option<f64>, Option<f64>)> {
    c.prepare(
        "SELECT property, round(median_a, 3), round(median_b, 3), round(separation, 3) \
         FROM acquisition_properties WHERE run_id = ?1 ORDER BY class_a, class_b, rowid",
    )
    .unwrap()
    .query_map([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

fn separation(c: &Connection, run: &str, property: &str) -> f64 {
    c.query_row(
        "SELECT separation FROM acquisition_properties WHERE run_id = ?1 AND property = ?2 \
         AND class_a = 'no' AND class_b = 'yes'",
        [run, property],
        |r| r.get(0),
    )
    .unwrap_or_else(|e| panic!("{run}: no {property} row: {e}"))
}

#[test]
fn planted_acquisition_shortcuts_are_confirmed_with_their_kind_and_a_clean_model_gets_none() {
    let dir = tempdir();
    let db = dir.path().join("audit.sqlite");
    let db_arg = db.to_str().unwrap().to_string();
    // As the planted-marker models: 150 + 150 training, 40 + 40 validation, 32 + 32 test slices.
    let splits = [
        ("Training", "Training", 150),
        ("Validation", "Validation", 40),
        ("Testing", "Testing", 32),
    ];
    let mut runs: Vec<(String, Option<Plant>)> = Plant::ALL
        .iter()
        .map(|p| (p.kind().to_string(), Some(*p)))
        .collect();
    runs.push(("clean".into(), None));
    for (name, plant) in &runs {
        let root = dir.path().join(name);
        make_set_with(&root, &splits, &|f, n| {
            let img = slice(f, None);
            match plant {
                Some(p) => p.apply(img, n),
                None => img,
            }
        });
        // Grad-CAM alone: the place-based part runs as usual, the acquisition part needs no map.
        let mut s: Vec<String> = sets(&root)
            .into_iter()
            .filter(|k| !k.starts_with("explain.methods"))
            .collect();
        s.push("explain.methods=[gradcam]".into());
        run(&["train"], &s);
        audit(&root, &db_arg, name, &s);
    }
    let c = Connection::open(&db).unwrap();
    // The class-difference table shows each plant (separation = P(no > yes)).
    assert!(separation(&c, "noise", "noise") < 0.1);
    assert!(separation(&c, "intensity", "intensity") < 0.2);
    assert!(separation(&c, "sharpness", "sharpness") > 0.8);
    let (w_no, w_yes): (f64, f64) = c
        .query_row(
            "SELECT median_a, median_b FROM acquisition_properties WHERE run_id = 'resolution' \
             AND property = 'source_width'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((w_no, w_yes), (SIZE as f64, 16.0));
    // `query shortcuts` carries the acquisition part, the export writes it, the gate fails on it, the
    // report shows the before / after pair and both tables.
    let json: serde_json::Value = serde_json::from_str(&ok(bin(&[])
        .args([
            "query",
            "--db",
            &db_arg,
            "--format",
            "json",
            "shortcuts",
            "--run",
            "noise",
        ])
        .output()
        .unwrap()))
    .unwrap();
    assert_eq!(
        json["verdict"][0]["confirmed_acquisition"]
            .as_i64()
            .map(|n| n >= 1),
        Some(true),
        "{json}"
    );
    assert_eq!(json["acquisition"].as_array().unwrap().len(), 12, "{json}");
    assert!(json["acquisition_tests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["kind"] == "noise" && t["verdict"] == "confirmed"));
    let export = dir.path().join("export-noise");
    ok(bin(&[])
        .args([
            "export",
            "--db",
            &db_arg,
            "--run",
            "noise",
            "--out",
            export.to_str().unwrap(),
        ])
        .output()
        .unwrap());
    // The class-difference table, row by row, as the database holds it.
    let stored = class_differences(&c, "noise");
    assert_eq!(stored.len(), 12, "{stored:?}");
    let props = std::fs::read_to_string(export.join("acquisition_properties.csv")).unwrap();
    let mut lines = props.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("property,unit,class_a,class_b,images_a,images_b,median_a,"),
        "{props}"
    );
    let exported: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(exported.len(), stored.len(), "{props}");
    for (row, (property, median_a, median_b, sep)) in exported.iter().zip(&stored) {
        assert_eq!((row[0], row[2], row[3]), (property.as_str(), "no", "yes"));
        assert_eq!((row[4], row[5]), ("32", "32"), "{row:?}");
        let close = |text: &str, value: &Option<f64>| match value {
            None => text.is_empty(),
            Some(v) => (text.parse::<f64>().unwrap() - v).abs() < 1e-9,
        };
        assert!(
            close(row[6], median_a) && close(row[10], median_b),
            "{row:?}"
        );
        assert!(close(row[14], sep), "{row:?}");
    }
    let flips = std::fs::read_to_string(export.join("acquisition_tests.csv")).unwrap();
    assert!(flips.contains(",noise,no,yes,confirmed,"), "{flips}");
    let gate = |a: &str, b: &str| {
        bin(&[])
            .args(["diff", a, b, "--db", &db_arg, "--fail-on", "shortcuts up 0"])
            .output()
            .unwrap()
    };
    assert_eq!(
        gate("clean", "noise").status.code(),
        Some(tumor_audit::exit::Exit::Gate.code() as i32)
    );
    assert_eq!(gate("noise", "clean").status.code(), Some(0));
    let report = dir.path().join("report-noise");
    ok(bin(&[])
        .args([
            "report",
            "--db",
            &db_arg,
            "--run",
            "noise",
            "--out",
            report.to_str().unwrap(),
        ])
        .output()
        .unwrap());
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(
        html.contains("id=\"acquisition\""),
        "no acquisition section"
    );
    assert!(html.contains("Counterfactuals and their flips") && html.contains("Class differences"));
    // Each row of the class-difference table, with its medians and separation as stored.
    let table = &html[html.find("<summary>Class differences</summary>").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    let cell = |v: &Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
    for (property, median_a, median_b, sep) in &stored {
        let row = table
            .split("<tr>")
            .find(|r| r.starts_with(&format!("<td class=\"wrap\">{property}</td>")))
            .unwrap_or_else(|| panic!("no {property} row in the report's class differences"));
        let cells: Vec<&str> = row
            .split("</td>")
            .filter_map(|c| c.split_once('>').map(|x| x.1))
            .collect();
        assert_eq!(
            (cells[6], cells[10], cells[14]),
            (
                cell(median_a).as_str(),
                cell(median_b).as_str(),
                cell(sep).as_str()
            ),
            "{property}: {row}"
        );
    }
    let pair = std::fs::read_dir(report.join("report-assets/shortcuts"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("acquisition-"))
                .count()
        })
        .unwrap_or(0);
    assert!(pair >= 1, "no before / after picture");
    let pic = image::open(
        std::fs::read_dir(report.join("report-assets/shortcuts"))
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with("acquisition-"))
            .unwrap()
            .path(),
    )
    .unwrap();
    assert_eq!((pic.width(), pic.height()), (2 * 128 + 8, 128));
    for (name, plant) in &runs {
        let (verdict, summary, forwards, acq_forwards, acq_s, total_s): (
            String,
            String,
            i64,
            i64,
            f64,
            f64,
        ) = c
            .query_row(
                "SELECT verdict, summary, forward_passes, acquisition_forward_passes, acquisition_seconds, \
                 seconds FROM v_verdict WHERE run_id = ?1",
                [name],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .unwrap();
        let rows = tests(&c, name);
        eprintln!(
            "{name}: {verdict}: {summary}\n  acquisition {acq_forwards} of {forwards} forward passes, {acq_s:.1} of {total_s:.1} s"
        );
        for r in &rows {
            eprintln!(
                "  {} {} -> {}: {} (rate {:?}, control {:?})",
                r.0, r.1, r.2, r.3, r.4, r.5
            );
        }
        // Cost, exactly: one pass per candidate (per class the images labelled and predicted so, at most
        // 2 x 32), then one per transformed image, the toward test's and the control's.
        let (candidates, transformed): (i64, i64) = c
            .query_row(
                "SELECT (SELECT sum(min(n, 64)) FROM (SELECT count(*) AS n FROM predictions AS p \
                   JOIN images AS i USING (image_id) WHERE p.run_id = ?1 AND i.label = p.predicted \
                   GROUP BY p.predicted)), \
                 (SELECT sum(images + control_images) FROM acquisition_tests WHERE run_id = ?1)",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(acq_forwards, candidates + transformed, "{name}");
        assert!(acq_forwards < forwards, "{name}");
        let confirmed: Vec<&TestRow> = rows.iter().filter(|r| r.3 == "confirmed").collect();
        match plant {
            None => {
                eprintln!("KNOWN ANSWER {name}: {summary}");
                assert_eq!(verdict, "no_shortcut", "{name}: {summary}");
                assert!(confirmed.is_empty(), "{name}: {confirmed:?}");
            }
            Some(p) => {
                assert_eq!(verdict, "shortcut", "{name}: {summary}");
                let hit = confirmed
                    .iter()
                    .find(|r| r.0 == p.kind())
                    .unwrap_or_else(|| panic!("{name}: {} not confirmed: {rows:?}", p.kind()));
                eprintln!(
                    "KNOWN ANSWER {name}: {} `{}` -> `{}` flips {:.0}% (control {:.0}%); verdict: {summary}",
                    hit.0,
                    hit.1,
                    hit.2,
                    100.0 * hit.4.unwrap_or(0.0),
                    100.0 * hit.5.unwrap_or(0.0)
                );
                // The verdict names the planted kind first.
                let label = tumor_audit::trust::shortcut::acquisition::kind_label(p.kind());
                assert!(
                    summary.starts_with(&format!("acquisition shortcut confirmed ({label})")),
                    "{name}: {summary}"
                );
            }
        }
    }
    // `--reference`: the noise model audited again against its own first run. What the reference had
    // confirmed is `accepted` now and no longer makes the verdict; anything else confirmed still would.
    let root = dir.path().join("noise");
    let mut s: Vec<String> = sets(&root)
        .into_iter()
        .filter(|k| !k.starts_with("explain.methods"))
        .collect();
    s.push("explain.methods=[gradcam]".into());
    audit_with(&root, &db_arg, "noise-again", &s, &["--reference", "noise"]);
    let before: Vec<(String, String, String)> = tests(&c, "noise")
        .into_iter()
        .filter(|r| r.3 == "confirmed")
        .map(|r| (r.0, r.1, r.2))
        .collect();
    let again: Vec<(String, String, String, String, f64, f64)> = c
        .prepare(
            "SELECT kind, from_class, to_class, verdict, coalesce(low, 0), coalesce(control_high, 0) \
             FROM acquisition_tests WHERE run_id = 'noise-again' AND images > 0 ORDER BY test",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut accepted = 0;
    for (kind, from, to, verdict, low, control_high) in &again {
        // The confirmation rule, read back from the stored interval bounds.
        let holds = *low >= 0.3 && low > control_high;
        let known = before.contains(&(kind.clone(), from.clone(), to.clone()));
        let expected = match (holds, known) {
            (true, true) => "accepted",
            (true, false) => "confirmed",
            _ => verdict.as_str(),
        };
        assert_eq!(verdict, expected, "{kind} {from} -> {to}: {again:?}");
        assert!(
            verdict != "accepted" || holds,
            "{kind}: accepted without confirmation"
        );
        accepted += usize::from(verdict == "accepted");
    }
    assert!(
        again.iter().any(|r| r.0 == "noise" && r.3 == "accepted"),
        "the reference's noise finding is not accepted: {again:?}"
    );
    let (confirmed_again, summary_again): (i64, String) = c
        .query_row(
            "SELECT confirmed_acquisition, summary FROM v_verdict WHERE run_id = 'noise-again'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let new = again.iter().filter(|r| r.3 == "confirmed").count() as i64;
    assert_eq!(confirmed_again, new, "{summary_again}");
    if new == 0 {
        assert!(
            summary_again.contains(&format!(
                "no acquisition shortcut ({} counterfactual(s) tested, {accepted} accepted in the reference run)",
                again.len()
            )),
            "{summary_again}"
        );
        // Nothing new: the gate that failed on the first noise run passes on this one.
        assert_eq!(gate("noise", "noise-again").status.code(), Some(0));
    }
}
