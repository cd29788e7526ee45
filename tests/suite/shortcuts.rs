//! Shortcut known answers on real Br35H slices (issue 15): small models trained where every tumour
//! image carries a planted marker, one model per marker of a different shape and place (a bright corner
//! patch, a short line of burnt-in text-like strokes, a thin frame line on one side, a small bright dot
//! near the top of the skull), and a clean model trained on the same images without a marker. The
//! audit's shortcut check must confirm each marker on the model, at its place (IoU of the confirmed
//! region with the planted one), and confirm nothing for the clean model. The detector runs with its
//! defaults: nothing in it knows where or what the markers are.
use std::path::{Path, PathBuf};

use image::{imageops::FilterType, GrayImage, Luma};
use rusqlite::Connection;

use super::support::browser::{require_chromium, Browser};
use super::support::cli::{assert_exit, bin, ok, run_ok, stdout};
use super::support::images::{br35h, write_set};
use super::support::models::{load_native, save_trace, small_cnn_sets};
use super::support::pages::{probe, shots_dir, url};
use super::support::{repo, tempdir};

/// Side of the training images: small, so that five models train in seconds.
pub(super) const SIZE: u32 = 40;
/// The stored maps' grid (the audit's MAP_STORE_SIZE).
const GRID: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Marker {
    Corner,
    Text,
    Frame,
    Dot,
}

impl Marker {
    const ALL: [Marker; 4] = [Marker::Corner, Marker::Text, Marker::Frame, Marker::Dot];

    fn name(self) -> &'static str {
        match self {
            Marker::Corner => "corner",
            Marker::Text => "text",
            Marker::Frame => "frame",
            Marker::Dot => "dot",
        }
    }

    /// The marker's pixels and their grey value, in SIZE x SIZE image coordinates.
    fn pixels(self) -> (Vec<(u32, u32)>, u8) {
        let rect = |x0: u32, x1: u32, y0: u32, y1: u32| -> Vec<(u32, u32)> {
            (y0..y1)
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .collect()
        };
        match self {
            // A 6 x 6 bright square in the top-right corner.
            Marker::Corner => (rect(32, 38, 2, 8), 255),
            // Three glyph-like stroke groups (an "L", a "T", an "E") along the bottom left, 1 px strokes
            // one pixel apart, as burnt-in scanner text would be.
            Marker::Text => {
                let mut p = rect(3, 4, 32, 37);
                p.extend(rect(3, 6, 36, 37));
                p.extend(rect(7, 10, 32, 33));
                p.extend(rect(8, 9, 32, 37));
                p.extend(rect(11, 12, 32, 37));
                p.extend(rect(11, 14, 32, 33));
                p.extend(rect(11, 14, 34, 35));
                p.extend(rect(11, 14, 36, 37));
                (p, 235)
            }
            // A 2 px frame line down the whole left side.
            Marker::Frame => (rect(0, 2, 0, SIZE), 200),
            // A 3 x 3 dot at the top centre, where the skull's top lies in most slices.
            Marker::Dot => (rect(19, 22, 4, 7), 255),
        }
    }

    /// The planted region on the stored maps' grid: the marker's bounding box (for the text line, the
    /// line; for the others, the marker itself), a cell in when its centre falls in it.
    fn grid_mask(self) -> Vec<bool> {
        let (pixels, _) = self.pixels();
        let (x0, x1) = (
            pixels.iter().map(|p| p.0).min().unwrap(),
            pixels.iter().map(|p| p.0).max().unwrap(),
        );
        let (y0, y1) = (
            pixels.iter().map(|p| p.1).min().unwrap(),
            pixels.iter().map(|p| p.1).max().unwrap(),
        );
        let mut img = vec![false; (SIZE * SIZE) as usize];
        for y in y0..=y1 {
            for x in x0..=x1 {
                img[(y * SIZE + x) as usize] = true;
            }
        }
        (0..GRID * GRID)
            .map(|i| {
                let (gy, gx) = (i / GRID, i % GRID);
                let (x, y) = (
                    ((gx as f64 + 0.5) * SIZE as f64 / GRID as f64) as u32,
                    ((gy as f64 + 0.5) * SIZE as f64 / GRID as f64) as u32,
                );
                img[(y * SIZE + x) as usize]
            })
            .collect()
    }
}

/// A Br35H slice at SIZE x SIZE grey, with `marker` burnt in.
pub(super) fn slice(path: &Path, marker: Option<Marker>) -> GrayImage {
    // Br35H has PNG bytes behind some .jpg names: the format comes from the content.
    let img = image::ImageReader::open(path)
        .unwrap()
        .with_guessed_format()
        .unwrap()
        .decode()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_luma8();
    let mut img = image::imageops::resize(&img, SIZE, SIZE, FilterType::Triangle);
    if let Some(m) = marker {
        let (pixels, value) = m.pixels();
        for (x, y) in pixels {
            img.put_pixel(x, y, Luma([value]));
        }
    }
    img
}

/// Writes Training/Validation/Testing under `root` from the first images of each Br35H split's class
/// folder (sorted: the same images for every model), the marker on every `yes` image.
fn make_set(root: &Path, splits: &[(&str, &str, usize)], marker: Option<Marker>) {
    make_set_with(root, splits, &|f, _| slice(f, marker));
}

/// Writes Training/Validation/Testing under `root`: every `no` image as [`slice`] makes it, every
/// `yes` image as `yes(file, its name)` does (what the planted-shortcut tests vary).
pub(super) fn make_set_with(
    root: &Path,
    splits: &[(&str, &str, usize)],
    yes: &dyn Fn(&Path, &str) -> GrayImage,
) {
    for &(split, out, n) in splits {
        write_set(root, out, |class| {
            br35h(split, class)
                .iter()
                .take(n)
                .map(|f| {
                    let name = f.file_stem().unwrap().to_string_lossy().into_owned();
                    let img = if class == "yes" {
                        yes(f, &name)
                    } else {
                        slice(f, None)
                    };
                    (format!("{name}.png"), img)
                })
                .collect()
        });
    }
}

pub(super) fn sets(root: &Path) -> Vec<String> {
    small_cnn_sets(root, SIZE, 12, 200, 10)
}

/// Audits `root`'s Testing folder into `db` as run `name`.
pub(super) fn audit(root: &Path, db: &str, name: &str, sets: &[String]) {
    audit_with(root, db, name, sets, &[]);
}

/// [`audit`] with more arguments (`--reference RUN`); returns what it printed.
pub(super) fn audit_with(
    root: &Path,
    db: &str,
    name: &str,
    sets: &[String],
    more: &[&str],
) -> String {
    let test_dir = root.join("Testing");
    let data = test_dir.to_str().unwrap();
    let args = [
        "audit",
        "--data",
        data,
        "--db",
        db,
        "--run",
        name,
        "--no-leakage-check",
    ];
    run(&[&args[..], more].concat(), sets)
}

/// The trained model of `root` exported to ONNX (`model.onnx`) and traced to TorchScript (`model.pt`)
/// with the project's own code.
fn imported_copies(root: &Path, sets: &[String]) -> (PathBuf, PathBuf) {
    let sets: Vec<String> = sets.to_vec();
    let settings = tumor_audit::config::Settings::load(&repo("config.yml"), &sets).unwrap();
    let spec = tumor_audit::model::InputSpec {
        channels: 1,
        size: SIZE as i64,
        classes: 2,
    };
    let cnn = load_native(&settings, spec, &root.join("w.safetensors"));
    let onnx = root.join("model.onnx");
    tumor_audit::model::onnx::export::export_native(&cnn, &onnx).unwrap();
    let torchscript = save_trace(&root.join("model.pt"), "Cnn", &cnn.input, &mut |x| {
        cnn.forward_t(x, false)
    });
    (onnx, torchscript)
}

/// Runs the tool, which must succeed; returns its standard output (printed too).
pub(super) fn run(args: &[&str], sets: &[String]) -> String {
    let out = stdout(&run_ok(sets, args));
    eprintln!("{out}");
    out
}

/// (region, class, verdict, occlusion rate, paste rate, mask) of a run.
type RegionRow = (i64, String, String, Option<f64>, Option<f64>, Vec<bool>);

fn regions(c: &Connection, run: &str) -> Vec<RegionRow> {
    c.prepare(
        "SELECT region, class, verdict, occlusion_rate, paste_rate, mask FROM shortcut_regions \
         WHERE run_id = ?1 ORDER BY region",
    )
    .unwrap()
    .query_map([run], |r| {
        let mask: Vec<u8> = r.get(5)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            mask.into_iter().map(|b| b != 0).collect(),
        ))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

fn iou(a: &[bool], b: &[bool]) -> f64 {
    let i = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let u = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    i as f64 / u.max(1) as f64
}

#[test]
fn planted_shortcuts_of_four_shapes_are_confirmed_at_their_place_and_a_clean_model_gets_none() {
    let dir = tempdir();
    let db = dir.path().join("audit.sqlite");
    let db_arg = db.to_str().unwrap().to_string();
    // 150 + 150 training, 40 + 40 validation, 32 + 32 test slices per model.
    let train = [
        ("Training", "Training", 150),
        ("Validation", "Validation", 40),
    ];
    let test = [("Testing", "Testing", 32)];
    let mut runs: Vec<(String, Option<Marker>)> = Marker::ALL
        .iter()
        .map(|m| (m.name().to_string(), Some(*m)))
        .collect();
    runs.push(("clean".into(), None));
    for (name, marker) in &runs {
        let root = dir.path().join(name);
        make_set(&root, &train, *marker);
        make_set(&root, &test, *marker);
        let s = sets(&root);
        run(&["train"], &s);
        audit(&root, &db_arg, name, &s);
    }
    // The same planted model imported: exported to ONNX and traced to TorchScript, each audited as a
    // user's model would be (TorchScript has no Grad-CAM: IG and Kernel SHAP find the region there).
    let corner = dir.path().join("corner");
    let corner_sets = sets(&corner);
    let (onnx, torchscript) = imported_copies(&corner, &corner_sets);
    for (name, key, extra) in [
        (
            "corner-onnx",
            format!("model.onnx={}", onnx.display()),
            None,
        ),
        (
            "corner-torchscript",
            format!("model.torchscript={}", torchscript.display()),
            Some("explain.methods=[integrated_gradients, kernel_shap]"),
        ),
    ] {
        let mut s = corner_sets.clone();
        s.push(key);
        s.extend(extra.map(str::to_string));
        audit(&corner, &db_arg, name, &s);
        runs.push((name.to_string(), Some(Marker::Corner)));
    }
    let c = Connection::open(&db).unwrap();
    // Every Kernel SHAP map has its split-half reproducibility; the deterministic methods have none.
    let (shap, with, others): (i64, i64, i64) = c
        .query_row(
            "SELECT sum(method = 'kernel_shap'), sum(method = 'kernel_shap' AND reproducibility BETWEEN -1 AND 1), \
             sum(method <> 'kernel_shap' AND reproducibility IS NOT NULL) FROM attribution_metrics",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((shap, with, others), (7 * 64, 7 * 64, 0));
    // `query shortcuts` reads the same verdict.
    let out = ok(bin(&[])
        .args([
            "query",
            "--db",
            &db_arg,
            "--format",
            "json",
            "shortcuts",
            "--run",
            "corner",
        ])
        .output()
        .unwrap());
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["verdict"][0]["verdict"], "shortcut", "{json}");
    assert!(json["regions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["verdict"] == "confirmed"));
    assert_eq!(json["methods"].as_array().unwrap().len(), 3, "{json}");
    // The gate: a confirmed shortcut that last night's run did not have fails `diff --fail-on`.
    let gate = |a: &str, b: &str| {
        bin(&[])
            .args([
                "diff",
                a,
                b,
                "--db",
                &db_arg,
                "--fail-on",
                "shortcuts up 0",
                "--format",
                "json",
            ])
            .output()
            .unwrap()
    };
    let up = gate("clean", "corner");
    assert_exit(&up, tumor_audit::exit::Exit::Gate.code() as i32);
    assert!(String::from_utf8_lossy(&up.stderr).contains("FAIL: shortcuts"));
    assert_eq!(gate("corner", "clean").status.code(), Some(0));
    // Per image, the causal tests add up to each region's counts (controls are not kept per image).
    let mismatched: i64 = c
        .query_row(
            "SELECT count(*) FROM shortcut_regions AS r WHERE \
               r.occluded_images <> (SELECT count(*) FROM shortcut_tests AS t WHERE t.run_id = r.run_id \
                                     AND t.region = r.region AND t.test = 'occlusion') \
            OR r.occlusion_flips <> (SELECT coalesce(sum(flipped), 0) FROM shortcut_tests AS t \
                                     WHERE t.run_id = r.run_id AND t.region = r.region AND t.test = 'occlusion') \
            OR r.pasted_images <> (SELECT count(*) FROM shortcut_tests AS t WHERE t.run_id = r.run_id \
                                   AND t.region = r.region AND t.test = 'paste') \
            OR r.paste_flips <> (SELECT coalesce(sum(flipped), 0) FROM shortcut_tests AS t \
                                 WHERE t.run_id = r.run_id AND t.region = r.region AND t.test = 'paste')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        mismatched, 0,
        "per-image tests disagree with the regions' counts"
    );
    // The report's page of an image whose occlusion flipped a confirmed region's class shows it: the
    // test's row and the region's box over the model input.
    let flipped_image: String = c
        .query_row(
            "SELECT t.image_id FROM shortcut_tests AS t JOIN shortcut_regions AS r USING (run_id, region) \
             WHERE t.run_id = 'corner' AND r.verdict = 'confirmed' AND t.test = 'occlusion' AND t.flipped = 1 \
             ORDER BY t.image_id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let report = dir.path().join("report-corner");
    let report_arg = report.to_str().unwrap();
    run(
        &[
            "report", "--db", &db_arg, "--run", "corner", "--out", report_arg,
        ],
        &[],
    );
    let pages: Vec<String> = std::fs::read_dir(report.join("images"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    // Its own page: the id row (other pages name it in links too).
    let own_row = format!("<td class=\"wrap\">{flipped_image}</td>");
    let page = pages
        .iter()
        .find(|p| p.contains(&own_row))
        .expect("the flipped image has a page");
    assert!(page.contains("Shortcut check on this image"), "{page}");
    assert!(page.contains("region-box confirmed"), "{page}");
    assert!(
        page.contains("filled in") && page.contains(">flipped<"),
        "{page}"
    );
    assert!(page.contains("report.html#verdict"), "{page}");
    // As a reader sees it at 1280 px: the page loads clean, the region's box is drawn over the input.
    let page_file = std::fs::read_dir(report.join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).unwrap().contains(&own_row))
        .unwrap();
    let chromium = require_chromium();
    let mut browser = Browser::launch(&chromium);
    let shot = shots_dir().join("image-shortcut-1280.png");
    let visit = browser.visit_at(
        &url(&page_file),
        r#"JSON.stringify(Array.from(document.querySelectorAll('#image-shortcuts .region-box.confirmed'))
             .map(b => b.getBoundingClientRect().width))"#,
        true,
        1280,
        Some(&shot),
    );
    assert!(visit.is_clean(), "{visit:#?}");
    let widths: Vec<f64> = serde_json::from_value(probe(&visit)).unwrap();
    assert!(
        !widths.is_empty() && widths.iter().all(|w| *w >= 8.0),
        "confirmed region boxes drawn: {widths:?} ({})",
        shot.display()
    );
    for (name, marker) in &runs {
        let (verdict, summary): (String, String) = c
            .query_row(
                "SELECT verdict, summary FROM v_verdict WHERE run_id = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let rows = regions(&c, name);
        eprintln!("{name}: {verdict}: {summary}");
        let planted = marker.map(|m| m.grid_mask());
        for (region, class, v, occ, paste, mask) in &rows {
            let overlap = planted.as_ref().map(|p| iou(mask, p));
            eprintln!(
                "  region {region} class {class}: {v}, occlusion {occ:?}, paste {paste:?}, IoU with the marker {overlap:?}"
            );
        }
        let confirmed: Vec<&RegionRow> = rows.iter().filter(|r| r.2 == "confirmed").collect();
        // The acquisition part: a marker on one side of the image moves to the other side when the
        // image is mirrored (these models train without flips), so the left-right flip of `yes`
        // images is confirmed; the dot sits near the middle, and the clean model has nothing to move.
        let flip: (String, Option<f64>, Option<f64>) = c
            .query_row(
                "SELECT verdict, rate, control_rate FROM acquisition_tests WHERE run_id = ?1 \
                 AND kind = 'flip' AND from_class = 'yes'",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        eprintln!("  flip `yes` -> `no`: {flip:?}");
        if matches!(marker, Some(Marker::Corner | Marker::Text | Marker::Frame)) {
            assert_eq!(flip.0, "confirmed", "{name}: {flip:?}");
        }
        match &planted {
            None => {
                eprintln!("KNOWN ANSWER {name}: {summary}");
                assert_eq!(verdict, "no_shortcut", "{name}: {summary}");
                assert!(confirmed.is_empty(), "{name}");
            }
            Some(p) => {
                assert_eq!(verdict, "shortcut", "{name}: {summary}");
                // The best confirmed region lies on the marker...
                let best = confirmed
                    .iter()
                    .max_by(|a, b| iou(&a.5, p).total_cmp(&iou(&b.5, p)))
                    .unwrap();
                let best_iou = iou(&best.5, p);
                eprintln!(
                    "KNOWN ANSWER {name}: confirmed region {} (class {}) IoU {best_iou:.2} with the marker, \
                     occlusion flips {:.0}%, paste flips {:.0}%",
                    best.0,
                    best.1,
                    100.0 * best.3.unwrap_or(0.0),
                    100.0 * best.4.unwrap_or(0.0)
                );
                assert!(best_iou >= 0.2, "{name}: IoU {best_iou}");
                // ...and nothing is confirmed away from it.
                for r in &confirmed {
                    let i = r.5.iter().zip(p).filter(|(a, b)| **a && **b).count();
                    assert!(
                        i > 0,
                        "{name}: region {} is confirmed away from the marker",
                        r.0
                    );
                }
            }
        }
    }
}
