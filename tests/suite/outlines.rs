//! Ground-truth outlines (`data.masks`) and the localisation figures, on answers known by
//! construction: a linear model whose evidence is exactly a synthetic tumour blob puts all its mass on
//! the outline and wins every pointing game; one that looks at a marker elsewhere puts none there.
//! Figures exist for every image with an outline and only for those; masks of another size, unreadable
//! masks and masks of no image are an error or a logged skip. The real fixture (PyRadiomics's brain
//! MRI slices and tumour label maps) is audited with the bundled model.
use std::path::Path;

use image::{GrayImage, Luma};
use rusqlite::Connection;
use tumor_audit::model::LayerSpec;

use super::support::cli::{bin_with, ok, text};
use super::support::db::count;
use super::support::models::{cnn, set};
use super::support::{repo, tempdir};

const SIZE: u32 = 32;
/// The tumour blob: a disk of radius 3 around (21, 11).
const BLOB: (f32, f32, f32) = (21.0, 11.0, 3.0);
/// The marker: the square x, y in 2..8 (background, far from the blob).
const MARKER: std::ops::Range<u32> = 2..8;
const METHODS: &str = "[gradient, guided_backprop, integrated_gradients, smoothgrad]";

fn in_blob(x: u32, y: u32) -> bool {
    let (cx, cy, r) = BLOB;
    (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) <= r * r
}

/// A grey "head" (an ellipse with a fixed texture) on black; `tumor` adds the blob at full brightness,
/// `marker` the bright corner square.
fn slice(seed: u32, tumor: bool, marker: bool) -> GrayImage {
    GrayImage::from_fn(SIZE, SIZE, |x, y| {
        let (dx, dy) = ((x as f32 - 16.0) / 12.0, (y as f32 - 16.0) / 14.0);
        let mut v = if dx * dx + dy * dy <= 1.0 {
            80 + ((x * 7 + y * 13 + seed * 29) % 41)
        } else {
            0
        };
        if tumor && in_blob(x, y) {
            v = 255;
        }
        if marker && MARKER.contains(&x) && MARKER.contains(&y) {
            v = 255;
        }
        Luma([v as u8])
    })
}

fn blob_mask(w: u32, h: u32) -> GrayImage {
    GrayImage::from_fn(w, h, |x, y| Luma([if in_blob(x, y) { 1 } else { 0 }]))
}

/// `root/Testing/{no,yes}` (yes: blob and marker) with masks in `root/masks/Testing/yes`: `n` tumour
/// images of which the last has no mask, `n` images without tumour.
fn make_set(root: &Path, n: u32) {
    for class in ["no", "yes"] {
        std::fs::create_dir_all(root.join("Testing").join(class)).unwrap();
        std::fs::create_dir_all(root.join("masks/Testing").join(class)).unwrap();
    }
    for i in 0..n {
        slice(i, false, false)
            .save(root.join(format!("Testing/no/n{i}.png")))
            .unwrap();
        slice(100 + i, true, true)
            .save(root.join(format!("Testing/yes/y{i}.png")))
            .unwrap();
        if i + 1 < n {
            blob_mask(SIZE, SIZE)
                .save(root.join(format!("masks/Testing/yes/y{i}.png")))
                .unwrap();
        }
    }
    // A mask with tumour pixels for an image of the tumour-free class: logged and ignored.
    blob_mask(SIZE, SIZE)
        .save(root.join("masks/Testing/no/n0.png"))
        .unwrap();
    // A mask of no image: logged and skipped.
    blob_mask(SIZE, SIZE)
        .save(root.join("masks/Testing/yes/nobody.png"))
        .unwrap();
}

/// A linear model (flatten, dense): the `yes` logit is the sum of the input over `evidence`, the `no`
/// logit the constant `bias`; its gradient is exactly the indicator of `evidence`.
fn linear_model(path: &Path, evidence: impl Fn(u32, u32) -> bool, bias: f32) {
    let model = cnn(
        &[LayerSpec::Flatten, LayerSpec::Dense { out: 2 }],
        1,
        SIZE as i64,
        2,
    );
    let n = (SIZE * SIZE) as usize;
    let mut w = vec![0.0f32; 2 * n];
    for y in 0..SIZE {
        for x in 0..SIZE {
            if evidence(x, y) {
                w[n + (y * SIZE + x) as usize] = 1.0;
            }
        }
    }
    set(&model, "1.weight", &w);
    set(&model, "1.bias", &[bias, 0.0]);
    model.save(path).unwrap();
}

fn sets(root: &Path, weights: &Path) -> Vec<String> {
    vec![
        format!("data.root={}", root.display()),
        "data.classes=[no, yes]".into(),
        "data.masks.layout=tree".into(),
        "data.masks.tumor_free_classes=[no]".into(),
        "données.image.size=32".into(),
        "model.architecture=custom".into(),
        "model.layers=[flatten, {dense: {out: 2}}]".into(),
        format!("model.weights={}", weights.display()),
        format!("explain.methods={METHODS}"),
        "explain.smoothgrad.samples=4".into(),
        "explain.integrated_gradients.steps=8".into(),
        format!("output.dir={}", root.join("out").display()),
    ]
}

fn audit(sets: &[String], db: &Path, run: &str) -> std::process::Output {
    bin_with(sets)
        .args(["audit", "--db", db.to_str().unwrap(), "--run", run])
        .args(["--no-leakage-check", "--no-shortcuts"])
        .output()
        .unwrap()
}

/// (mass_on_tumor, pointing_hit, energy_pointing, iou_top_area, outline_area) of every row of a run.
fn figures(db: &Connection, run: &str) -> Vec<(f64, i64, f64, f64, f64)> {
    let mut st = db
        .prepare(
            "SELECT mass_on_tumor, pointing_hit, energy_pointing, iou_top_area, outline_area \
             FROM v_localisation WHERE run_id = ?1",
        )
        .unwrap();
    st.query_map([run], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

#[test]
fn evidence_on_the_blob_scores_one_and_a_marker_elsewhere_scores_zero() {
    let dir = tempdir();
    let root = dir.path();
    let n = 4;
    make_set(root, n);
    let blob_area = (0..SIZE * SIZE)
        .filter(|i| in_blob(i % SIZE, i / SIZE))
        .count() as f64
        / (SIZE * SIZE) as f64;
    let db_path = root.join("audit.sqlite");

    // The model that looks at the blob: `yes` images sum to ~29 there, `no` images to ~15.
    let blob_w = root.join("blob.safetensors");
    linear_model(&blob_w, in_blob, 22.0);
    let out = audit(&sets(root, &blob_w), &db_path, "blob");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("outlines: {} of {} images have a mask", n, 2 * n)),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nobody.png") && stderr.contains("matches no image"),
        "the orphan mask is logged: {stderr}"
    );
    assert!(
        stderr.contains("n0.png") && stderr.contains("tumor_free_classes"),
        "the tumour-free class's outline is logged: {stderr}"
    );
    let db = Connection::open(&db_path).unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM predictions WHERE run_id = 'blob' AND correct = 1"
        ),
        2 * n as i64,
        "the blob model classifies every image"
    );
    // Outlines for the n - 1 tumour images with a mask, and only those.
    assert_eq!(
        count(&db, "SELECT count(*) FROM outlines WHERE run_id = 'blob'"),
        (n - 1) as i64
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM outlines JOIN images USING (image_id) \
             WHERE run_id = 'blob' AND (label <> 'yes' OR path LIKE '%y3.png')"
        ),
        0
    );
    let rows = figures(&db, "blob");
    assert_eq!(rows.len(), (n - 1) as usize * 4, "four methods per outline");
    for (mass, hit, energy, iou, area) in &rows {
        assert!(*mass > 0.999, "mass on the blob {mass}");
        assert_eq!(*hit, 1);
        assert!(*energy > 0.999, "energy pointing {energy}");
        assert!(*iou > 0.999, "IoU {iou}");
        assert!(
            (area - blob_area).abs() < 1e-9,
            "area {area} vs {blob_area}"
        );
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM errors WHERE run_id = 'blob'"),
        0
    );
    // The run's line in the verdict section (no shortcut check here: every method counts).
    assert!(
        stdout.contains(&format!(
            "localisation: on images with an outline ({}), all methods (none is marked trusted) put a \
             median 100.0% of their mass on the tumour (chance: the outline's area share {:.1}%); \
             pointing game hits 100.0%",
            n - 1,
            100.0 * blob_area
        )),
        "{stdout}"
    );
    // `query bias` shows the figures per class x method, correct and incorrect side by side.
    let sets_blob = sets(root, &blob_w);
    let db_arg = db_path.to_str().unwrap();
    let bias = ok(bin_with(&sets_blob)
        .args([
            "query", "--db", db_arg, "--format", "csv", "bias", "--run", "blob",
        ])
        .args(["--localisation"])
        .output()
        .unwrap());
    let mut r = csv::Reader::from_reader(bias.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), 4, "one row per method of class yes: {bias}");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for row in &rows {
        assert_eq!(&row[col("label")], "yes");
        assert_eq!(&row[col("n_right")], &(n - 1).to_string());
        assert_eq!(
            row[col("tumor_mass_right")].parse::<f64>().unwrap().round(),
            1.0
        );
        assert_eq!(row[col("pointing_right")].parse::<f64>().unwrap(), 1.0);
        assert_eq!(&row[col("n_wrong")], "0");
    }
    let table = ok(bin_with(&sets_blob)
        .args(["query", "--db", db_arg, "bias", "--run", "blob"])
        .output()
        .unwrap());
    assert!(
        table.contains("localisation on images with a ground-truth outline"),
        "{table}"
    );
    assert!(
        table.contains("localisation: on images with an outline"),
        "{table}"
    );
    // The export: one row per image x method with an outline, and the summary.
    let export = root.join("export");
    ok(bin_with(&sets_blob)
        .args(["export", "--db", db_arg, "--run", "blob", "--out"])
        .arg(&export)
        .output()
        .unwrap());
    let lines = |f: &str| {
        csv::Reader::from_path(export.join(f))
            .unwrap()
            .records()
            .count()
    };
    assert_eq!(lines("localisation.csv"), (n - 1) as usize * 4);
    assert_eq!(lines("localisation_summary.csv"), 4);
    // The report: the run's line, the table, the outline density beside the mean maps, a gallery
    // filter and order, the outline drawn on the image pages.
    let report = root.join("report");
    ok(bin_with(&sets_blob)
        .args(["report", "--db", db_arg, "--run", "blob", "--out"])
        .arg(&report)
        .output()
        .unwrap());
    let index = std::fs::read_to_string(report.join("report.html")).unwrap();
    for want in [
        "<b>Localisation:</b> on images with an outline (3)",
        "On the tumour: localisation against the ground-truth outlines",
        "mean ground-truth outline density of yes",
        "with a ground-truth outline (3)",
        "least mass on the tumour first",
    ] {
        assert!(index.contains(want), "report.html lacks {want:?}");
    }
    let outlined =
        std::fs::read_to_string(report.join("views/outlined--tumor_mass-1.html")).unwrap();
    assert_eq!(
        outlined
            .matches("the maps put a median 100.0% of their mass on the tumour")
            .count(),
        3
    );
    let pages: Vec<String> = std::fs::read_dir(report.join("images"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let drawn: Vec<&String> = pages
        .iter()
        .filter(|p| p.contains("the ground-truth tumour outline over the model's input"))
        .collect();
    assert_eq!(drawn.len(), 3, "one page per outlined image draws it");
    for p in drawn {
        // Over the input and over each of the four maps, with the figures under each map.
        assert_eq!(p.matches("class=\"outline\"").count(), 5);
        assert_eq!(p.matches("pointing game").count(), 4);
        assert!(p.contains(">hit<"), "{p}");
    }
    assert_eq!(
        std::fs::read_dir(report.join("report-assets/outline"))
            .unwrap()
            .count(),
        3
    );

    // The model that looks at the marker: the same images, no evidence on the tumour.
    let marker_w = root.join("marker.safetensors");
    linear_model(
        &marker_w,
        |x, y| MARKER.contains(&x) && MARKER.contains(&y),
        18.0,
    );
    let out = audit(&sets(root, &marker_w), &db_path, "marker");
    assert!(out.status.success(), "{}", text(&out));
    let rows = figures(&db, "marker");
    assert_eq!(rows.len(), (n - 1) as usize * 4);
    for (mass, hit, energy, iou, _) in &rows {
        assert!(*mass < 0.001, "mass on the blob {mass}");
        assert_eq!(*hit, 0);
        assert!(*energy < 0.001 && *iou < 0.001, "{energy} {iou}");
    }
}

#[test]
fn masks_of_another_size_or_unreadable_are_errors_naming_the_files() {
    let dir = tempdir();
    let root = dir.path();
    make_set(root, 3);
    // y0's mask is 16 x 16 (its image is 32 x 32); y1's is not an image.
    blob_mask(16, 16)
        .save(root.join("masks/Testing/yes/y0.png"))
        .unwrap();
    std::fs::write(root.join("masks/Testing/yes/y1.png"), b"not a png").unwrap();
    let w = root.join("blob.safetensors");
    linear_model(&w, in_blob, 22.0);
    let db_path = root.join("audit.sqlite");
    let out = audit(&sets(root, &w), &db_path, "bad-masks");
    assert_eq!(out.status.code(), Some(3), "a partial run: {}", text(&out));
    let db = Connection::open(&db_path).unwrap();
    let mut st = db
        .prepare("SELECT stage, message FROM errors WHERE run_id = 'bad-masks' ORDER BY path")
        .unwrap();
    let errors: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|(s, m)| s == "metrics" && m.starts_with("outline: mask")),
        "{errors:?}"
    );
    let size = &errors[0].1;
    assert!(
        size.contains("y0.png") && size.contains("16x16") && size.contains("32x32"),
        "{size}"
    );
    assert!(errors[1].1.contains("y1.png"), "{}", errors[1].1);
    // The images are audited; neither has figures.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM predictions WHERE run_id = 'bad-masks'"
        ),
        6
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM outlines WHERE run_id = 'bad-masks'"
        ),
        0
    );
}

/// The real fixture with the bundled model: figures for the 10 tumour slices and no other image.
#[test]
fn pyradiomics_slices_with_the_bundled_model() {
    let dir = tempdir();
    let fixture = repo("tests/fixtures/outlines");
    let db_path = dir.path().join("audit.sqlite");
    let sets = vec![
        format!("data.root={}", fixture.display()),
        "data.classes=[no_tumor, tumor]".into(),
        "data.masks.layout=tree".into(),
        "data.masks.tumor_free_classes=[no_tumor]".into(),
        "explain.methods=[gradcam, integrated_gradients, guided_backprop]".into(),
        "explain.integrated_gradients.steps=8".into(),
        format!("output.dir={}", dir.path().join("out").display()),
    ];
    let out = audit(&sets, &db_path, "pyradiomics");
    assert!(out.status.success(), "{}", text(&out));
    let db = Connection::open(&db_path).unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM predictions WHERE run_id = 'pyradiomics'"
        ),
        18
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM outlines JOIN images USING (image_id) \
             WHERE run_id = 'pyradiomics' AND label = 'tumor'"
        ),
        10
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM outlines WHERE run_id = 'pyradiomics'"
        ),
        10,
        "no outline for the no_tumor slices"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM localisation WHERE run_id = 'pyradiomics'"
        ),
        30
    );
    // The outlines' areas are the fixture's (11 to 258 of 16384 pixels at 128 x 128).
    let (lo, hi): (f64, f64) = db
        .query_row(
            "SELECT min(area_fraction), max(area_fraction) FROM outlines WHERE run_id = 'pyradiomics'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!((lo - 11.0 / 16384.0).abs() < 1e-9, "{lo}");
    assert!((hi - 258.0 / 16384.0).abs() < 1e-9, "{hi}");
    for (mass, hit, energy, iou, area) in figures(&db, "pyradiomics") {
        assert!((0.0..=1.0).contains(&mass) && (0.0..=1.0).contains(&energy));
        assert!((0.0..=1.0).contains(&iou) && hit <= 1 && area > 0.0);
        assert!(
            energy >= mass - 1e-6,
            "the box holds the outline: {energy} < {mass}"
        );
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM errors WHERE run_id = 'pyradiomics'"
        ),
        0
    );
}
