//! Trust checks: deletion/insertion curves against their closed form on linear models, the cascading
//! re-initialisation (the right layers change, the others stay bit-identical), the per-stage Spearman
//! bookkeeping, and the tables and views they are stored in.
use std::collections::HashMap;

use tch::Tensor;
use tumor_audit::attribution::{ExplainConfig, ImageInput, Method};
use tumor_audit::metrics;
use tumor_audit::model::{LayerSpec, Model, NativeCnn};
use tumor_audit::query::trust as qt;
use tumor_audit::query::{Cell, Table};
use tumor_audit::store::trust::{
    self as st, OtherClassRecord, SanityCheckRecord, SanityImage, SanityStageRecord,
};
use tumor_audit::store::{
    FaithfulnessRecord, ImageRecord, ImageResult, PredictionRecord, RunRecord, Store, Writer,
    WriterMessage,
};
use tumor_audit::trust::faithfulness::{self as fa, Score};
use tumor_audit::trust::sanity;

use super::support::db::count;
use super::support::models::{cnn, conv, dense_relu_dense, image, set};
use super::support::tempdir;

/// Contributions of the 16 pixels of a 4x4 image: a permutation of 8, 7, ..., -7 (sum 8).
const CONTRIB: [f32; 16] = [
    -3., 8., 0., -7., 5., 2., -1., 6., -5., 1., 7., -2., 4., -6., 3., -4.,
];

/// Class 0: logit 0; class 1: logit w . x with w = `CONTRIB`, no bias.
fn linear() -> Model {
    let m = cnn(&[LayerSpec::Flatten, LayerSpec::Dense { out: 2 }], 1, 4, 2);
    set(&m, "1.weight", &[vec![0f32; 16], CONTRIB.to_vec()].concat());
    set(&m, "1.bias", &[0., 0.]);
    Model::new(m)
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y}");
    }
}

#[test]
fn linear_logit_curves_match_the_hand_computed_closed_form() {
    // f(x) = w . x with x = 1 everywhere and reference 0, so removing pixel p lowers the logit by w_p.
    // Order by the map w (most positive first), K = 4 steps of 4 pixels:
    //   removed per step: {8,7,6,5} = 26, {4,3,2,1} = 10, {0,-1,-2,-3} = -6, {-4,-5,-6,-7} = -22.
    // Deletion  = f minus what is removed: 8, -18, -28, -22, 0;
    // insertion = what is put back:        0,  26,  36,  30, 8.
    // AUC (trapezoid, dx = 1/4): deletion (-5 - 23 - 25 - 11) / 4 = -16; insertion (13 + 31 + 33 + 19) / 4 = 24.
    let model = linear();
    let x = image(&[1.0; 16], 4);
    let order = fa::importance_order(&CONTRIB, &(0..16).collect::<Vec<_>>());
    let mut logit = |b: &Tensor| fa::model_scores(&model, b, 1, Score::Logit);
    let c = fa::curves_with(&x, &order, 0.0, 4, 3, &mut logit).unwrap();
    close(&c.fractions, &[0., 0.25, 0.5, 0.75, 1.], 0.0, "fractions");
    close(&c.deletion, &[8., -18., -28., -22., 0.], 1e-5, "deletion");
    close(&c.insertion, &[0., 26., 36., 30., 8.], 1e-5, "insertion");
    assert!((c.deletion_auc + 16.0).abs() < 1e-5, "{}", c.deletion_auc);
    assert!((c.insertion_auc - 24.0).abs() < 1e-5, "{}", c.insertion_auc);
    // The batch size does not change the result (10 images in batches of 3 above, all at once here).
    let all = fa::curves_with(&x, &order, 0.0, 4, 64, &mut logit).unwrap();
    assert_eq!(all, c);
    // Reference 1 and x = 2: contributions w_p (x_p - 1) are the same, f(reference) = sum w = 8 is
    // added to every point, so both AUCs move by 8.
    let x2 = image(&[2.0; 16], 4);
    let c2 = fa::curves_with(&x2, &order, 1.0, 4, 64, &mut logit).unwrap();
    close(
        &c2.deletion,
        &[16., -10., -20., -14., 8.],
        1e-5,
        "deletion, reference 1",
    );
    close(
        &c2.insertion,
        &[8., 34., 44., 38., 16.],
        1e-5,
        "insertion, reference 1",
    );
    assert!((c2.deletion_auc + 8.0).abs() < 1e-5 && (c2.insertion_auc - 32.0).abs() < 1e-5);
    // The reverse order (least important first) deletes the negative evidence first: higher deletion AUC.
    let reverse: Vec<usize> = order.iter().rev().copied().collect();
    let r = fa::curves_with(&x, &reverse, 0.0, 4, 64, &mut logit).unwrap();
    close(
        &r.deletion,
        &[8., 30., 36., 26., 0.],
        1e-5,
        "reverse deletion",
    );
    assert!(r.deletion_auc > c.deletion_auc);
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

#[test]
fn two_class_probability_curves_are_the_softmax_of_the_logit_curves() {
    // Logits (0, w . x): p(class 1) = softmax = sigmoid(w . x), point by point, for the gradient map
    // (= w on a linear model) and for the stored random baseline.
    let model = linear();
    let x = image(&[1.0; 16], 4);
    let mut cfg = ExplainConfig::default();
    let f = fa::FaithfulnessConfig {
        steps: 4,
        ..Default::default()
    };
    cfg.batch_size = 4;
    let grad = tumor_audit::attribution::gradient::gradient(&model, &x, &[1])
        .unwrap()
        .remove(0);
    let rows = fa::image_curves(
        &model,
        &cfg,
        &f,
        "img-a",
        &x,
        1,
        &[(Method::Gradient, &grad)],
    )
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].method.as_str(), rows[1].method.as_str()),
        ("gradient", "random")
    );
    let want: Vec<f64> = [8., -18., -28., -22., 0.]
        .iter()
        .map(|&v| sigmoid(v))
        .collect();
    close(&rows[0].curves.deletion, &want, 1e-6, "p deletion");
    let want: Vec<f64> = [0., 26., 36., 30., 8.]
        .iter()
        .map(|&v| sigmoid(v))
        .collect();
    close(&rows[0].curves.insertion, &want, 1e-6, "p insertion");
    // Random baseline: same end points (whole image, all reference), deterministic per image id.
    let rnd = &rows[1].curves;
    close(
        &[rnd.deletion[0], rnd.deletion[4]],
        &[sigmoid(8.), 0.5],
        1e-6,
        "random ends",
    );
    let again = fa::image_curves(&model, &cfg, &f, "img-a", &x, 1, &[]).unwrap();
    assert_eq!(again[0].curves, *rnd, "same image id, same random order");
    let other = fa::image_curves(&model, &cfg, &f, "img-b", &x, 1, &[]).unwrap();
    assert_ne!(
        other[0].curves, *rnd,
        "another image id, another random order"
    );
    // The map that orders by the true contributions deletes faster than the random order.
    assert!(rows[0].curves.deletion_auc < rnd.deletion_auc);
    assert!(rows[0].curves.insertion_auc > rnd.insertion_auc);
}

#[test]
fn step_counts_orders_and_trapezoid() {
    assert_eq!(
        fa::step_counts(10, 4),
        vec![0, 3, 5, 8, 10],
        "2.5 and 7.5 round up"
    );
    assert_eq!(fa::step_counts(16384, 16)[1], 1024);
    assert_eq!(fa::trapezoid_auc(&[0., 0.5, 1.], &[1., 1., 0.]), 0.75);
    // Signed order, largest first; ties follow the tie-break permutation, not the pixel index.
    let map = [0.5f32, 2.0, 0.5, -1.0, 0.5, f32::NAN];
    let tie = [4, 5, 3, 2, 1, 0];
    assert_eq!(fa::importance_order(&map, &tie), vec![1, 4, 2, 0, 5, 3]);
    // A random order is a permutation.
    let mut r = tumor_audit::attribution::rng_for_key("id", "random", 0);
    let mut o = fa::random_order(100, &mut r);
    o.sort();
    assert_eq!(o, (0..100).collect::<Vec<_>>());
    // Cost stated in docs/verdict.md: (K + 1) x 2 x (methods + 1).
    let f = fa::FaithfulnessConfig::default();
    assert_eq!(f.forward_passes(6), 17 * 2 * 7);
}

/// conv(2) - batchnorm - relu - conv(3) - relu - maxpool - flatten - dense(4) - relu - dense(2), 1x8x8.
fn small_cnn() -> NativeCnn {
    let m = cnn(
        &[
            conv(2),
            LayerSpec::Batchnorm,
            LayerSpec::Relu,
            conv(3),
            LayerSpec::Relu,
            LayerSpec::Maxpool { kernel: 2 },
            LayerSpec::Flatten,
            LayerSpec::Dense { out: 4 },
            LayerSpec::Relu,
            LayerSpec::Dense { out: 2 },
        ],
        1,
        8,
        2,
    );
    // Non-default values everywhere (conv biases and batch-norm statistics start at 0/1 otherwise).
    for (name, t) in m.vs.variables() {
        let n = t.numel();
        let v: Vec<f32> = (0..n).map(|i| 0.37 + 0.01 * i as f32).collect();
        set(&m, &name, &v);
    }
    m
}

fn params(m: &NativeCnn) -> HashMap<String, Tensor> {
    m.vs.variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().copy()))
        .collect()
}

#[test]
fn cascading_reinit_changes_exactly_the_cascade_layers() {
    let original = small_cnn();
    let before = params(&original);
    assert_eq!(sanity::parametrised_layers(&original), vec![0, 1, 3, 7, 9]);
    let order = sanity::cascade(&original);
    assert_eq!(order, vec![9, 7, 3, 1, 0], "output first");
    let copy = sanity::duplicate(&original).unwrap();
    for (k, v) in params(&copy) {
        assert!(v.equal(&before[&k]), "the copy starts bit-identical: {k}");
    }
    for stage in 1..=order.len() {
        sanity::reinit_layer(&copy, order[stage - 1], 5).unwrap();
        let now = params(&copy);
        for (name, v) in &now {
            let layer: usize = name.split('.').next().unwrap().parse().unwrap();
            let randomised = order[..stage].contains(&layer);
            if randomised {
                assert!(
                    !v.equal(&before[name]),
                    "stage {stage}: {name} re-initialised"
                );
            } else {
                assert!(
                    v.equal(&before[name]),
                    "stage {stage}: {name} untouched, bit for bit"
                );
            }
        }
    }
    // The model the copy came from is untouched.
    for (k, v) in params(&original) {
        assert!(v.equal(&before[&k]), "original {k}");
    }
    // The constructor's distributions: Kaiming-uniform bounds sqrt(6 / fan_in), conv and dense biases
    // within 1 / sqrt(fan_in) (drawn, not 0), batch norm weight in [0, 1], bias 0, running statistics
    // 0 and 1.
    let now = params(&copy);
    let max = |n: &str| now[n].abs().max().double_value(&[]);
    let fan_in3 = 2.0 * 9.0; // conv 3: 2 input channels x 3x3
    assert!(max("3.weight") <= (6.0f64 / fan_in3).sqrt() + 1e-7);
    assert!(max("3.bias") <= 1.0 / fan_in3.sqrt() + 1e-7 && max("3.bias") > 0.0);
    assert!(max("7.weight") <= (6.0f64 / 48.0).sqrt() + 1e-7); // 3 x 4 x 4 inputs
    assert!(max("7.bias") <= 1.0 / 48f64.sqrt() + 1e-7 && max("7.bias") > 0.0);
    let bn_w = &now["1.weight"];
    assert!(bn_w.min().double_value(&[]) >= 0.0 && bn_w.max().double_value(&[]) <= 1.0);
    assert_eq!(max("1.bias"), 0.0);
    assert_eq!(max("1.running_mean"), 0.0);
    assert_eq!(
        Vec::<f32>::try_from(&now["1.running_var"]).unwrap(),
        vec![1.0, 1.0]
    );
    // Seeded: the same seed gives the same values, another seed others.
    let again = sanity::duplicate(&original).unwrap();
    sanity::reinit_layer(&again, 7, 5).unwrap();
    assert!(params(&again)["7.weight"].equal(&now["7.weight"]));
    sanity::reinit_layer(&again, 7, 6).unwrap();
    assert!(!params(&again)["7.weight"].equal(&now["7.weight"]));
    // Layers without parameters are refused.
    assert!(sanity::reinit_layer(&again, 2, 0).is_err());
}

#[test]
fn each_stage_is_compared_with_stage_zero_of_the_same_image_and_method() {
    // dense(3) - relu - dense(2) on 2x2 inputs. The cascade re-initialises layer 3, then layer 1.
    // Gradient map of a linear head: at stage 1 the map changes; the stored correlation must be the
    // Spearman of exactly (stage-0 map, stage-1 map) of that image, recomputed here from the maps.
    let m = dense_relu_dense(
        &[1., 0.5, -0.2, 0.3, 0., 1., 0.7, -0.4, 0.2, -0.3, 1., 0.6],
        &[0.1, 0.2, 0.3],
        &[1., -1., 2., 0.5, 0.5, -1.],
        &[0., 0.],
    );
    let xs = [vec![1., 2., 0.5, 0.25f32], vec![0.3, -0.2, 1.5, 0.8]];
    let tensors: Vec<Tensor> = xs.iter().map(|v| image(v, 2)).collect();
    let inputs: Vec<ImageInput> = tensors
        .iter()
        .zip(&xs)
        .enumerate()
        .map(|(i, (x, g))| ImageInput {
            id: if i == 0 { "a" } else { "b" },
            x,
            grey: g,
            target: i as i64,
            segmentation: Default::default(),
        })
        .collect();
    let methods = [Method::Gradient, Method::GuidedBackprop];
    let cfg = ExplainConfig::default();
    let mut seen = Vec::new();
    let r = sanity::randomise(&m, &cfg, &methods, &inputs, 2, 9, &mut |s, n| {
        seen.push((s, n))
    })
    .unwrap();
    assert_eq!(seen, vec![(0, 2), (1, 2), (2, 2)]);
    assert_eq!(r.layers, vec!["3:dense", "1:dense"]);
    assert_eq!(r.stages.len(), 2 * 2 * 3, "images x methods x stages");
    // Recompute every map by hand on copies re-initialised the same way.
    let stage_models: Vec<Model> = (0..=2)
        .map(|s| {
            let c = sanity::duplicate(&m).unwrap();
            for &layer in &[3usize, 1][..s] {
                sanity::reinit_layer(&c, layer, 9).unwrap();
            }
            Model::new(c)
        })
        .collect();
    for row in &r.stages {
        let map_at = |stage: usize| {
            tumor_audit::attribution::explain(
                &stage_models[stage],
                &cfg,
                row.method,
                &inputs[row.image],
            )
            .unwrap()
            .map
        };
        let (m0, ms) = (map_at(0), map_at(row.stage));
        let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
        let want_abs = metrics::spearman(&abs(&m0), &abs(&ms)) as f64;
        let want_signed = metrics::spearman(&m0, &ms) as f64;
        assert_eq!(row.similarity.spearman_abs, want_abs, "{row:?}");
        assert_eq!(row.similarity.spearman_signed, want_signed, "{row:?}");
        assert_eq!(row.empty, sanity::is_empty(&ms));
        assert_eq!(
            row.layer.as_deref(),
            [None, Some("3:dense"), Some("1:dense")][row.stage]
        );
    }
    // Stage 0 against itself: 1 (the maps are not constant here).
    assert!(r
        .stages
        .iter()
        .filter(|s| s.stage == 0)
        .all(|s| s.similarity.spearman_abs == 1.0 && s.similarity.spearman_signed == 1.0));
    // Other class: one row per image x method, the other class's map against the target's.
    assert_eq!(r.other_class.len(), 4);
    for o in &r.other_class {
        assert_eq!(o.other, 1 - inputs[o.image].target);
        let t =
            tumor_audit::attribution::explain(&stage_models[0], &cfg, o.method, &inputs[o.image])
                .unwrap()
                .map;
        let base = &inputs[o.image];
        let other_input = ImageInput {
            id: base.id,
            x: base.x,
            grey: base.grey,
            target: o.other,
            segmentation: Default::default(),
        };
        let u = tumor_audit::attribution::explain(&stage_models[0], &cfg, o.method, &other_input)
            .unwrap()
            .map;
        assert_eq!(o.similarity, sanity::similarity(&t, &u));
    }
    // A constant map has no ranks: similarity 0 by convention, never NaN.
    let s = sanity::similarity(&[0.0; 4], &[1., 2., 3., 4.]);
    assert_eq!((s.spearman_abs, s.spearman_signed), (0.0, 0.0));
    // Sign flip: the signed correlation says -1, the absolute one 1.
    let s = sanity::similarity(&[1., -2., 3., -4.], &[-1., 2., -3., 4.]);
    assert_eq!((s.spearman_abs, s.spearman_signed), (1.0, -1.0));
}

fn run_record(run_id: &str) -> RunRecord {
    RunRecord {
        run_id: run_id.into(),
        config_yaml: "explain: {}\n".into(),
        model_path: "models/m.safetensors".into(),
        model_sha256: "cd".repeat(32),
        data_root: "data/test".into(),
        tool_version: "0.1.0".into(),
        device: "Cpu".into(),
        seed: 0,
        profile: "default".into(),
        methods: vec!["gradient".into()],
        baseline_value: 0.0,
        reference_value: 0.0,
        images_total: 2,
        model_description: "native CNN".into(),
        explains: "logits".into(),
    }
}

fn curve_row(method: &str, del: f64, ins: f64) -> FaithfulnessRecord {
    FaithfulnessRecord {
        method: method.into(),
        steps: 2,
        score: "probability".into(),
        deletion_auc: del,
        insertion_auc: ins,
        deletion_curve: vec![0.9, 0.5, 0.1],
        insertion_curve: vec![0.1, 0.5, 0.9],
        seconds: 0.01,
    }
}

fn result(n: usize, label: &str, correct: bool, rows: Vec<FaithfulnessRecord>) -> ImageResult {
    ImageResult {
        run_id: "r".into(),
        image: ImageRecord {
            image_id: format!("{n:064x}"),
            path: format!("t/{label}/{n}.png"),
            label: Some(label.into()),
            width: 8,
            height: 8,
            brain_area_fraction: 0.5,
            mask_fallback: false,
        },
        prediction: Some(PredictionRecord {
            predicted: label.into(),
            confidence: 0.9,
            probabilities: "{}".into(),
            target: label.into(),
            correct: Some(correct),
        }),
        metrics: vec![],
        agreement: vec![],
        maps: vec![],
        faithfulness: rows,
        outline: None,
        localisation: Vec::new(),
        errors: vec![],
        seconds: 0.1,
    }
}

#[test]
fn trust_tables_and_views_on_a_hand_made_example() {
    let dir = tempdir();
    let path = dir.path().join("a.sqlite");
    let store = Store::open(&path).unwrap();
    store.begin_run(&run_record("r")).unwrap();
    // Faithfulness through the writer: image 1 (yes, right): gradient 0.2 / 0.7 vs random 0.4 / 0.5;
    // image 2 (no, wrong): gradient 0.6 / 0.3 vs random 0.4 / 0.5. Image 3's curve has the wrong length:
    // refused by the table's CHECK, recorded as a 'write' error, the others kept.
    let writer = Writer::spawn(&path, 8, 8).unwrap();
    let send = writer.sender();
    let mut bad = curve_row("gradient", 0.1, 0.1);
    bad.deletion_curve.push(0.0);
    // Image n with its gradient curve's AUCs and the random curve's 0.4 / 0.5.
    let with_random = |n, label, correct, del, ins| {
        let rows = vec![
            curve_row("gradient", del, ins),
            curve_row("random", 0.4, 0.5),
        ];
        result(n, label, correct, rows)
    };
    for r in [
        with_random(1, "yes", true, 0.2, 0.7),
        with_random(2, "no", false, 0.6, 0.3),
        result(3, "no", true, vec![bad]),
    ] {
        send.send(WriterMessage::Image(Box::new(r))).unwrap();
    }
    drop(send);
    writer.finish().unwrap();
    let rows = st::faithfulness_summary(store.conn(), Some("r")).unwrap();
    assert_eq!(rows.len(), 1, "one row per method, random as columns");
    let g = &rows[0];
    assert_eq!((g.method.as_str(), g.images), ("gradient", 2));
    let approx = |v: Option<f64>, w: f64| (v.unwrap() - w).abs() < 1e-12;
    assert!(approx(g.mean_deletion_auc, 0.4) && approx(g.random_deletion_auc, 0.4));
    assert!(approx(g.mean_insertion_auc, 0.5) && approx(g.random_insertion_auc, 0.5));
    assert!(
        approx(g.share_deletion_below_random, 0.5) && approx(g.share_insertion_above_random, 0.5)
    );
    let by_class: Vec<(String, i64, f64)> = store
        .conn()
        .prepare("SELECT label, correct, mean_deletion_auc FROM v_faithfulness_by_class WHERE run_id = 'r' ORDER BY label")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        by_class,
        vec![("no".into(), 0, 0.6), ("yes".into(), 1, 0.2)]
    );
    // `query trust`'s per-method table: the same means, split by correct (image 1) and wrong (image 2).
    let t = qt::faithfulness(store.conn(), "r").unwrap();
    assert_eq!(t.rows.len(), 1);
    let at = |name: &str| t.rows[0][t.column(name).unwrap()].as_f64();
    assert!(approx(at("deletion_auc"), 0.4) && approx(at("random_deletion_auc"), 0.4));
    assert!(approx(at("deletion_auc_right"), 0.2) && approx(at("deletion_auc_wrong"), 0.6));
    assert!(approx(at("insertion_auc_right"), 0.7) && approx(at("insertion_auc_wrong"), 0.3));
    // Mean curves: gradient and random, 3 points each (K = 2) at fractions 0, 0.5, 1; every stored
    // curve is (0.9, 0.5, 0.1) / (0.1, 0.5, 0.9), so the means are too; random comes last.
    let c = qt::mean_curves(store.conn(), "r").unwrap();
    let pts: Vec<(String, f64, f64, f64)> = c
        .rows
        .iter()
        .map(|r| {
            let n = |i: usize| r[i].as_f64().unwrap();
            (r[0].as_text().unwrap().to_string(), n(2), n(4), n(5))
        })
        .collect();
    assert_eq!(pts.len(), 6, "{pts:?}");
    for (i, (m, f, d, ins)) in pts.iter().enumerate() {
        assert_eq!(m, if i < 3 { "gradient" } else { "random" });
        let k = (i % 3) as f64;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(*f, k / 2.0) && close(*d, 0.9 - 0.4 * k) && close(*ins, 0.1 + 0.4 * k));
    }
    let write_errors = count(
        store.conn(),
        "SELECT count(*) FROM errors WHERE stage = 'write'",
    );
    assert_eq!(write_errors, 1);
    let curve: String = store
        .conn()
        .query_row(
            "SELECT deletion_curve FROM faithfulness WHERE method = 'random' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(curve, "[0.9,0.5,0.1]");

    // Sanity check: two images, two methods, stages 0..=2, threshold 0.5. At stage 2 guided backprop
    // keeps (0.8, 0.6) -> mean 0.7 -> fail; gradient (0.1, -0.3) -> mean |rho| 0.2 -> pass.
    let images = vec![
        SanityImage {
            image_id: format!("{:064x}", 1),
            path: "t/yes/1.png".into(),
            label: Some("yes".into()),
        },
        SanityImage {
            image_id: format!("{:064x}", 9),
            path: "t/no/9.png".into(),
            label: None,
        },
    ];
    let layers = vec!["3:dense".to_string(), "0:conv".to_string()];
    let mut stages = Vec::new();
    for (method, s1, s2) in [
        ("guided_backprop", [0.9, 0.7], [0.8, 0.6]),
        ("gradient", [0.5, 0.1], [0.1, -0.3]),
    ] {
        for (i, img) in images.iter().enumerate() {
            for (stage, v) in [(0, 1.0), (1, s1[i]), (2, s2[i])] {
                stages.push(SanityStageRecord {
                    image_id: img.image_id.clone(),
                    method: method.into(),
                    stage,
                    layer: (stage > 0).then(|| layers[stage as usize - 1].clone()),
                    spearman_abs: v,
                    spearman_signed: v / 2.0,
                    empty: false,
                });
            }
        }
    }
    let other = vec![OtherClassRecord {
        image_id: images[0].image_id.clone(),
        method: "gradient".into(),
        target: "yes".into(),
        other: "no".into(),
        spearman_abs: 0.25,
        spearman_signed: -0.5,
        empty: true,
    }];
    let check = SanityCheckRecord {
        run_id: "r".into(),
        seed: 3,
        threshold: 0.5,
        layers: layers.clone(),
        methods: vec!["guided_backprop".into(), "gradient".into()],
        seconds: 1.0,
    };
    store
        .write_sanity(&check, &images, &stages, &other)
        .unwrap();
    // Written twice: the second check replaces the first.
    store
        .write_sanity(&check, &images, &stages, &other)
        .unwrap();
    // Read back as `query trust` / `export` read it.
    let curve = qt::sanity_curve(store.conn(), "r").unwrap();
    assert_eq!(curve.rows.len(), 6, "methods x stages");
    let cell = |t: &Table, row: &[Cell], name: &str| row[t.column(name).unwrap()].clone();
    let point = |m: &str, s: i64| -> Vec<Cell> {
        curve
            .rows
            .iter()
            .find(|r| {
                cell(&curve, r, "method") == Cell::text(m)
                    && cell(&curve, r, "stage") == Cell::Int(s)
            })
            .unwrap()
            .clone()
    };
    let num = |m: &str, s: i64, name: &str| cell(&curve, &point(m, s), name).as_f64();
    assert!(approx(num("guided_backprop", 1, "mean_spearman_abs"), 0.8));
    assert_eq!(
        cell(&curve, &point("guided_backprop", 1), "layer"),
        Cell::text("3:dense")
    );
    assert_eq!(cell(&curve, &point("gradient", 0), "layer"), Cell::Null);
    assert!(approx(num("gradient", 2, "mean_spearman_abs"), -0.1));
    assert!(approx(num("gradient", 2, "mean_abs_spearman_abs"), 0.2));
    assert!(approx(num("gradient", 2, "mean_spearman_signed"), -0.05));
    assert_eq!(num("gradient", 2, "images"), Some(2.0));
    // Every row of a method carries the run's verdict on it.
    assert_eq!(
        cell(&curve, &point("gradient", 0), "verdict"),
        Cell::text("pass")
    );
    assert_eq!(
        cell(&curve, &point("guided_backprop", 0), "verdict"),
        Cell::text("fail")
    );
    // The wide table: one row per method, most similar at the last stage first; the stage columns
    // hold the mean |rho| the verdict is taken on.
    let wide = qt::sanity_wide(store.conn(), "r").unwrap();
    assert_eq!(
        wide.columns,
        [
            "method",
            "verdict",
            "0 trained",
            "1 3:dense",
            "2 0:conv",
            "signed_last"
        ]
    );
    let rows: Vec<(Cell, Cell, Option<f64>)> = wide
        .rows
        .iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[4].as_f64()))
        .collect();
    assert_eq!(rows[0].0, Cell::text("guided_backprop"));
    assert_eq!(rows[0].1, Cell::text("fail"));
    assert!(approx(rows[0].2, 0.7));
    assert_eq!(rows[1].0, Cell::text("gradient"));
    assert!(approx(rows[1].2, 0.2));
    let o = qt::other_class(store.conn(), "r").unwrap();
    assert_eq!(o.rows.len(), 1);
    assert!(approx(
        cell(&o, &o.rows[0], "mean_spearman_signed").as_f64(),
        -0.5
    ));
    assert_eq!(cell(&o, &o.rows[0], "empty_maps"), Cell::Int(1));
    // The image the run never audited was added to `images` for the foreign key.
    let n = count(
        store.conn(),
        "SELECT count(*) FROM images WHERE path = 't/no/9.png'",
    );
    assert_eq!(n, 1);
    // A check of a run that does not exist is refused.
    let mut missing = check.clone();
    missing.run_id = "nope".into();
    let e = store
        .write_sanity(&missing, &images, &stages, &other)
        .unwrap_err();
    assert!(e.to_string().contains("there is no run nope"), "{e}");
}
