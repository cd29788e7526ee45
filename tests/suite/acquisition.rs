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
use super::support::cli::{bin, ok};
use super::support::tempdir;

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

/// The planted-marker models' settings with Grad-CAM alone: the place-based part runs as usual, the
/// acquisition part needs no map.
fn gradcam_sets(root: &std::path::Path) -> Vec<String> {
    let mut s: Vec<String> = sets(root)
        .into_iter()
        .filter(|k| !k.starts_with("explain.methods"))
        .collect();
    s.push("explain.methods=[gradcam]".into());
    s
}

/// One row of a run's flip table.
#[derive(Debug)]
struct TestRow {
    kind: String,
    from: String,
    to: String,
    verdict: String,
    images: i64,
    rate: Option<f64>,
    low: Option<f64>,
    control_images: i64,
    control_rate: Option<f64>,
    control_high: Option<f64>,
}

impl TestRow {
    /// The confirmation rule, read back from the stored interval bounds: the flip rate's lower bound
    /// at 30% or more and above the control's upper bound.
    fn would_confirm(&self) -> bool {
        match (self.low, self.control_high) {
            (Some(low), Some(high)) => low >= 0.3 && self.control_images > 0 && low > high,
            _ => false,
        }
    }
}

fn tests(c: &Connection, run: &str) -> Vec<TestRow> {
    c.prepare(
        "SELECT kind, from_class, to_class, verdict, images, rate, low, control_images, control_rate, \
         control_high FROM acquisition_tests WHERE run_id = ?1 ORDER BY test",
    )
    .unwrap()
    .query_map([run], |r| {
        Ok(TestRow {
            kind: r.get(0)?,
            from: r.get(1)?,
            to: r.get(2)?,
            verdict: r.get(3)?,
            images: r.get(4)?,
            rate: r.get(5)?,
            low: r.get(6)?,
            control_images: r.get(7)?,
            control_rate: r.get(8)?,
            control_high: r.get(9)?,
        })
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

/// One row of a run's class-difference table, rounded to 3 decimals as `query`, the export and the
/// report show it.
#[derive(Debug)]
struct Difference {
    property: String,
    images: (i64, i64),
    median_a: Option<f64>,
    median_b: Option<f64>,
    separation: Option<f64>,
}

/// The class-difference table of a run, in its order.
fn class_differences(c: &Connection, run: &str) -> Vec<Difference> {
    c.prepare(
        "SELECT property, images_a, images_b, round(median_a, 3), round(median_b, 3), \
         round(separation, 3) FROM acquisition_properties WHERE run_id = ?1 \
         ORDER BY class_a, class_b, rowid",
    )
    .unwrap()
    .query_map([run], |r| {
        Ok(Difference {
            property: r.get(0)?,
            images: (r.get(1)?, r.get(2)?),
            median_a: r.get(3)?,
            median_b: r.get(4)?,
            separation: r.get(5)?,
        })
    })
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
        let s = gradcam_sets(&root);
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
    for (row, d) in exported.iter().zip(&stored) {
        assert_eq!((row[0], row[2], row[3]), (d.property.as_str(), "no", "yes"));
        let count = |text: &str| text.parse::<i64>().unwrap();
        assert_eq!((count(row[4]), count(row[5])), d.images, "{row:?}");
        let close = |text: &str, value: &Option<f64>| match value {
            None => text.is_empty(),
            Some(v) => (text.parse::<f64>().unwrap() - v).abs() < 1e-9,
        };
        assert!(
            close(row[6], &d.median_a) && close(row[10], &d.median_b),
            "{row:?}"
        );
        assert!(close(row[14], &d.separation), "{row:?}");
    }
    // Every image measured; JPEG quality only on JPEG files (these are PNG).
    let images = |p: &str| stored.iter().find(|d| d.property == p).unwrap().images;
    assert_eq!(images("noise"), (32, 32));
    assert_eq!(images("jpeg_quality"), (0, 0));
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
    // The page's flip table leaves the example's image id (a sha256) to the export, keeps the summary.
    let flips_table = &html[html.find("Counterfactuals and their flips").unwrap()..];
    let flips_table = &flips_table[..flips_table.find("</table>").unwrap()];
    assert!(
        !flips_table.contains("<th>example_image</th>") && flips_table.contains("<th>summary</th>")
    );
    // Each row of the class-difference table, with its medians and separation as stored.
    let table = &html[html.find("<summary>Class differences</summary>").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    let cell = |v: &Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
    for d in &stored {
        let property = &d.property;
        let row = table
            .split("<tr>")
            .find(|r| r.starts_with(&format!("<td class=\"wrap\">{property}</td>")))
            .unwrap_or_else(|| panic!("no {property} row in the report's class differences"));
        let cells: Vec<&str> = row
            .split("</td>")
            .filter_map(|c| c.split_once('>').map(|x| x.1))
            .collect();
        assert_eq!(
            (cells[4], cells[5]),
            (
                d.images.0.to_string().as_str(),
                d.images.1.to_string().as_str()
            ),
            "{property}: {row}"
        );
        assert_eq!(
            (cells[6], cells[10], cells[14]),
            (
                cell(&d.median_a).as_str(),
                cell(&d.median_b).as_str(),
                cell(&d.separation).as_str()
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
                r.kind, r.from, r.to, r.verdict, r.rate, r.control_rate
            );
        }
        // The stored verdicts follow the stored intervals.
        for r in &rows {
            assert_eq!(r.verdict == "confirmed", r.would_confirm(), "{name}: {r:?}");
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
        let confirmed: Vec<&TestRow> = rows.iter().filter(|r| r.verdict == "confirmed").collect();
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
                    .find(|r| r.kind == p.kind())
                    .unwrap_or_else(|| panic!("{name}: {} not confirmed: {rows:?}", p.kind()));
                eprintln!(
                    "KNOWN ANSWER {name}: {} `{}` -> `{}` flips {:.0}% (control {:.0}%); verdict: {summary}",
                    hit.kind,
                    hit.from,
                    hit.to,
                    100.0 * hit.rate.unwrap_or(0.0),
                    100.0 * hit.control_rate.unwrap_or(0.0)
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
    let s = gradcam_sets(&root);
    let printed = audit_with(&root, &db_arg, "noise-again", &s, &["--reference", "noise"]);
    let key = |r: &TestRow| (r.kind.clone(), r.from.clone(), r.to.clone());
    let before: Vec<(String, String, String)> = tests(&c, "noise")
        .iter()
        .filter(|r| r.verdict == "confirmed")
        .map(key)
        .collect();
    let again: Vec<TestRow> = tests(&c, "noise-again")
        .into_iter()
        .filter(|r| r.images > 0)
        .collect();
    let mut accepted = 0;
    for r in &again {
        let expected = match (r.would_confirm(), before.contains(&key(r))) {
            (true, true) => "accepted",
            (true, false) => "confirmed",
            _ => r.verdict.as_str(),
        };
        assert_eq!(r.verdict, expected, "{r:?}");
        assert!(
            r.verdict != "accepted" || r.would_confirm(),
            "accepted without confirmation: {r:?}"
        );
        accepted += usize::from(r.verdict == "accepted");
    }
    assert!(
        again
            .iter()
            .any(|r| r.kind == "noise" && r.verdict == "accepted"),
        "the reference's noise finding is not accepted: {again:?}"
    );
    let (confirmed_again, summary_again, passes): (i64, String, i64) = c
        .query_row(
            "SELECT confirmed_acquisition, summary, acquisition_forward_passes FROM v_verdict \
             WHERE run_id = 'noise-again'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    // The audit prints the part's cost: its forward passes as stored, and its share of the audit's time.
    let cost = printed
        .lines()
        .find_map(|l| l.strip_prefix("acquisition counterfactuals: "))
        .unwrap_or_else(|| panic!("no cost line in {printed}"));
    assert!(
        cost.starts_with(&format!("{passes} forward passes, ")),
        "{cost}"
    );
    let share: f64 = cost
        .split(", ")
        .last()
        .and_then(|x| x.strip_suffix("% of the audit's time"))
        .unwrap_or_else(|| panic!("no share in {cost}"))
        .parse()
        .unwrap();
    assert!(share > 0.0 && share < 100.0, "{cost}");
    let new = again.iter().filter(|r| r.verdict == "confirmed").count() as i64;
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
