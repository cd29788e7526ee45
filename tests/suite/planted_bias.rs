//! Planted-bias known answer: a model trained where every tumor image carries a bright square in a
//! background corner learns the square; the audit must show its attributions sitting in the background
//! far more than those of the same model trained without the marker, and flag the marker images.
use std::path::Path;

use image::{GrayImage, Luma};
use rusqlite::Connection;

use super::util::tempdir;

const SIZE: u32 = 32;

/// A synthetic slice: a textured bright ellipse ("head") on black; `tumor` adds a faint blob inside;
/// `marker` adds a bright 6x6 square in the top-left background corner.
fn slice(seed: u32, tumor: bool, marker: bool) -> GrayImage {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    let mut noise = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 24) as f32 / 255.0
    };
    let (cx, cy) = (16.0 + (seed % 3) as f32 - 1.0, 17.0);
    let (bx, by) = (12.0 + (seed % 9) as f32, 12.0 + (seed / 9 % 9) as f32);
    GrayImage::from_fn(SIZE, SIZE, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let inside = ((fx - cx) / 11.0).powi(2) + ((fy - cy) / 13.0).powi(2) <= 1.0;
        let mut v = if inside { 90.0 + 60.0 * noise() } else { 0.0 };
        if tumor && inside && (fx - bx).powi(2) + (fy - by).powi(2) <= 6.0 {
            v += 15.0;
        }
        if marker && (1..7).contains(&x) && (1..7).contains(&y) {
            v = 250.0;
        }
        Luma([v.min(255.0) as u8])
    })
}

fn make_set(root: &Path, split: &str, n: u32, offset: u32, with_marker: bool) {
    for (class, tumor) in [("no", false), ("yes", true)] {
        let dir = root.join(split).join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let seed = offset + i * 2 + tumor as u32;
            slice(seed, tumor, tumor && with_marker)
                .save(dir.join(format!("{class}{seed}.png")))
                .unwrap();
        }
    }
}

fn tool(args: &[&str], sets: &[String]) -> std::process::Output {
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let out = super::util::bin(&sets).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_model_biased_by_a_background_marker_is_caught_by_the_audit() {
    let dir = tempdir();
    let biased = dir.path().join("biased");
    let clean = dir.path().join("clean");
    for (root, marker) in [(&biased, true), (&clean, false)] {
        make_set(root, "Training", 80, 0, marker);
        make_set(root, "Validation", 20, 1000, marker);
    }
    // One test set, with the marker on every tumor image, audited by both models.
    make_set(dir.path(), "Testing", 10, 5000, true);
    let test = dir.path().join("Testing");
    let db = dir.path().join("audit.sqlite");
    let common = |root: &Path| -> Vec<String> {
        vec![
            format!("données.image.size={SIZE}"),
            "model.architecture=custom".into(),
            "model.layers=[{conv: {out: 8}}, relu, {maxpool: {kernel: 2}}, {conv: {out: 16}}, relu, {maxpool: {kernel: 2}}, flatten, {dense: {out: 2}}]".into(),
            format!("model.weights={}", root.join("w.safetensors").display()),
            format!("data.root={}", root.display()),
            "training.epochs=20".into(),
            "training.patience=20".into(),
            "training.learning_rate=0.003".into(),
            "training.augment={horizontal_flip: false, rotate_degrees: 0, intensity: 0}".into(),
            "explain.methods=[integrated_gradients, gradcam, kernel_shap]".into(),
            "explain.kernel_shap.samples=256".into(),
            "explain.integrated_gradients.steps=16".into(),
            "explain.segmentation.method=grid".into(),
            "explain.segmentation.grid_cells=8".into(),
        ]
    };
    for (root, run) in [(&biased, "biased"), (&clean, "clean")] {
        let sets = common(root);
        tool(&["train"], &sets);
        let refs: Vec<&str> = sets.iter().map(String::as_str).collect();
        let out = super::util::bin(&refs)
            .args([
                "audit",
                "--data",
                test.to_str().unwrap(),
                "--db",
                db.to_str().unwrap(),
                "--run",
                run,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let c = Connection::open(&db).unwrap();
    let mean = |run: &str, method: &str, column: &str| -> f64 {
        c.query_row(
            &format!("SELECT avg({column}) FROM v_image_method WHERE run_id = ?1 AND method = ?2 AND label = 'yes'"),
            [run, method],
            |r| r.get(0),
        )
        .unwrap()
    };
    let methods = ["integrated_gradients", "gradcam", "kernel_shap"];
    let masses: Vec<(f64, f64)> = methods
        .iter()
        .map(|m| {
            (
                mean("biased", m, "mass_background"),
                mean("clean", m, "mass_background"),
            )
        })
        .collect();
    for (m, (b, k)) in methods.iter().zip(&masses) {
        eprintln!(
            "{m}: mean background mass on marker images: biased model {b:.3}, clean model {k:.3}"
        );
    }
    // Grad-CAM puts nearly all of the biased model's attribution outside the head (at its 8x8 resolution
    // on the rim and towards the marker, see the mean maps below); IG (baseline 0) spreads
    // over the bright head as well, so for it the known answer is only "clearly more". Kernel SHAP on an
    // 8x8 grid is printed, not asserted: its least-squares noise on the many black cells (measured
    // 0.43 vs 0.33) keeps the contrast small at this budget.
    let (b, k) = masses[1];
    assert!(b > 0.8 && b > 2.0 * k, "gradcam: biased {b} vs clean {k}");
    let (b, k) = masses[0];
    assert!(b > 1.5 * k, "integrated_gradients: biased {b} vs clean {k}");
    // Marker images flagged for background mass (Grad-CAM): nearly all for the biased model, few for
    // the clean one. (The biased model also looks at the empty corner of unmarked images, where the
    // absence of the marker is its evidence for "no": flagged too, and rightly so.)
    let marker_flagged = |run: &str| -> i64 {
        c.query_row(
            "SELECT COUNT(DISTINCT image_id) FROM v_suspicious WHERE run_id = ?1 AND method = 'gradcam' AND label = 'yes' AND mass_background > 0.5",
            [run],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (b, k) = (marker_flagged("biased"), marker_flagged("clean"));
    eprintln!("marker images flagged by Grad-CAM background mass: biased model {b} of 10, clean model {k} of 10");
    assert!(b >= 9 && k * 2 <= b, "biased {b}, clean {k}");

    // The read side on the same database: `query suspicious` puts the biased model's marker images
    // first, its mean Grad-CAM map of the tumor class sits on the marker's corner, and `diff` gates it.
    let db_arg = db.to_str().unwrap();
    let suspicious = |run: &str| -> Vec<serde_json::Value> {
        let out = tool(
            &[
                "query",
                "--db",
                db_arg,
                "--format",
                "json",
                "suspicious",
                "--run",
                run,
                "--limit",
                "0",
            ],
            &[],
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (sb, sc) = (suspicious("biased"), suspicious("clean"));
    let score = |rows: &[serde_json::Value]| -> Vec<i64> {
        rows.iter().map(|r| r["score"].as_i64().unwrap()).collect()
    };
    let marker_first: Vec<bool> = sb.iter().take(10).map(|r| r["label"] == "yes").collect();
    eprintln!(
        "query suspicious: biased run {} images, scores {:?}, top 10 marker images {:?}; clean run {} images, scores {:?}",
        sb.len(),
        score(&sb),
        marker_first,
        sc.len(),
        score(&sc)
    );
    assert!(
        marker_first.iter().filter(|m| **m).count() >= 8,
        "{marker_first:?}"
    );
    assert!(
        score(&sb).iter().take(10).sum::<i64>() > score(&sc).iter().take(10).sum::<i64>(),
        "the biased run's top images are more suspicious than the clean run's"
    );
    // Mean maps of the tumor class: the methods that resolve the 6x6 marker (IG, Kernel SHAP on the
    // 8x8 grid) concentrate in its corner (1/16 of the area), and far more for the biased model.
    // Grad-CAM is not asserted here: at the last conv layer's 8x8 resolution its mean map sits on the
    // head's rim for both models.
    let corner = |run: &str, method: &str| -> (f64, bool) {
        let maps = tumor_audit::query::bias::mean_maps(&c, run).unwrap();
        let m = maps
            .iter()
            .find(|m| m.label == "yes" && m.method == method)
            .expect("a mean map of the tumor class");
        let (w, h) = (m.width, m.height);
        let in_corner = |i: usize| i % w < w / 4 && i / w < h / 4;
        let share: f64 = (0..w * h)
            .filter(|&i| in_corner(i))
            .map(|i| m.values[i] as f64)
            .sum::<f64>()
            / m.values.iter().map(|&v| v as f64).sum::<f64>();
        let argmax = (0..w * h)
            .max_by(|&i, &j| m.values[i].total_cmp(&m.values[j]))
            .unwrap();
        (share, in_corner(argmax))
    };
    for method in ["integrated_gradients", "kernel_shap"] {
        let ((b, b_max), (k, _)) = (corner("biased", method), corner("clean", method));
        eprintln!("mean {method} map of the tumor class: share in the marker's corner: biased {b:.3} (peak in the corner: {b_max}), clean {k:.3}");
        assert!(
            b > 0.3 && b_max && b > 1.5 * k,
            "{method}: biased {b}, clean {k}"
        );
    }
    let png_dir = dir.path().join("export");
    tool(
        &[
            "export",
            "--db",
            db_arg,
            "--run",
            "biased",
            "--out",
            png_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(png_dir.join("mean-maps/yes__gradcam.png").is_file());

    // diff clean -> biased: Grad-CAM background mass up; the rule fires one way and not the other.
    let diff = |a: &str, b: &str, rule: &str| {
        super::util::bin(&[])
            .args([
                "diff",
                a,
                b,
                "--db",
                db_arg,
                "--fail-on",
                rule,
                "--format",
                "json",
            ])
            .output()
            .unwrap()
    };
    let up = diff("clean", "biased", "mass_background@gradcam up 0.1");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&up.stdout).unwrap();
    let gradcam = rows
        .iter()
        .find(|r| r["metric"] == "mass_background" && r["scope"] == "gradcam")
        .unwrap();
    eprintln!("diff clean biased: gradcam background mass {gradcam}");
    assert!(gradcam["delta"].as_f64().unwrap() > 0.1);
    assert_eq!(
        up.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(String::from_utf8_lossy(&up.stderr).contains("FAIL: mass_background @ gradcam"));
    let down = diff("biased", "clean", "mass_background@gradcam up 0.1");
    assert_eq!(
        down.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let acc = diff("clean", "biased", "accuracy down 50");
    assert_eq!(
        acc.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&acc.stderr)
    );
}
