//! Known-answer tests of the attribution methods: each states the maths it checks.
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};
use tumor_audit::attribution::segment::Segmentation;
use tumor_audit::attribution::{
    self, gradcam, gradient, perturbation, ExplainConfig, ImageInput, LimeConfig, Method,
};
use tumor_audit::model::{CamLayer, Classifier, LayerSpec, Model, NativeCnn};

use super::support::models::{assert_close, cnn, dense_relu_dense, image, set};
use super::support::tempdir;

const S: i64 = 4;

/// f(x) = w . x + b for class 1 (class 0 has other weights), on 4x4 single-channel images.
fn linear() -> (NativeCnn, Vec<f32>, f32) {
    let m = cnn(&[LayerSpec::Flatten, LayerSpec::Dense { out: 2 }], 1, S, 2);
    let w: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) * 0.25).collect();
    let other: Vec<f32> = (0..16).map(|i| ((i * 5) % 7) as f32 - 3.0).collect();
    set(&m, "1.weight", &[other, w.clone()].concat());
    set(&m, "1.bias", &[0.3, -1.25]);
    (m, w, -1.25)
}

fn x_values() -> Vec<f32> {
    (0..16).map(|i| ((i * 37) % 11) as f32 / 10.0).collect()
}

#[test]
fn linear_gradient_is_w() {
    // d(w.x + b)/dx = w, whatever x.
    let (model, w, _) = linear();
    let g = gradient::gradient(&model, &image(&x_values(), S), &[1])
        .unwrap()
        .remove(0);
    assert_close(&g, &w, 1e-6, "gradient");
}

#[test]
fn linear_integrated_gradients_is_x_times_w_and_complete() {
    // The gradient is constant along the path, so IG = (x - 0) * w exactly, and
    // sum(IG) = w.x = f(x) - f(0) (completeness) to 1e-5.
    let (model, w, b) = linear();
    let x = x_values();
    let img = image(&x, S);
    let run = gradient::GradientRun {
        forward: &|x| model.logits(x),
        x: &img,
        target: 1,
        batch: 64,
    };
    let r = run.integrated_gradients(0.0, 80).unwrap();
    let expected: Vec<f32> = x.iter().zip(&w).map(|(a, b)| a * b).collect();
    assert_close(&r.map, &expected, 1e-5, "IG");
    let fx: f64 = x.iter().zip(&w).map(|(a, b)| (a * b) as f64).sum::<f64>() + b as f64;
    assert!((r.f_x - fx).abs() < 1e-5 && (r.f_baseline - b as f64).abs() < 1e-5);
    let sum: f64 = r.map.iter().map(|&v| v as f64).sum();
    assert!(
        (sum - (fx - b as f64)).abs() < 1e-5,
        "sum(IG) {sum} vs f(x)-f(0) {}",
        fx - b as f64
    );
    assert!(r.completeness_error < 1e-5);
}

#[test]
fn linear_smoothgrad_is_w_for_any_noise() {
    // The gradient of a linear function does not depend on where it is taken: mean of w over samples = w.
    let (model, w, _) = linear();
    for noise in [0.0, 0.2, 3.0] {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let img = image(&x_values(), S);
        let run = gradient::GradientRun {
            forward: &|x| model.logits(x),
            x: &img,
            target: 1,
            batch: 16,
        };
        let g = run.smoothgrad(50, noise, &mut rng).unwrap().0;
        assert_close(&g, &w, 1e-5, "smoothgrad");
    }
}

/// Class 1 of `img` explained by switching superpixels of `seg` to `reference`, in float32, 64 at a time.
fn perturbed<'a>(
    model: &'a NativeCnn,
    img: &'a Tensor,
    seg: &'a Segmentation,
    reference: f32,
) -> perturbation::Perturbation<'a> {
    perturbation::Perturbation {
        model,
        x: img,
        target: 1,
        seg,
        reference: reference.into(),
        batch: 64,
        bf16: false,
    }
}

/// 2x2 grid of 2x2 superpixels on the 4x4 image.
fn quadrants() -> Segmentation {
    let raw: Vec<u32> = (0..16)
        .map(|i| ((i / 4) / 2 * 2 + (i % 4) / 2) as u32)
        .collect();
    Segmentation::from_raw_labels(4, 4, &raw)
}

#[test]
fn kernel_shap_recovers_exact_shapley_values_of_a_linear_model() {
    // With superpixel-constant features, f(z) = f(ref) + sum_S z_S w_S.(x_S - ref_S) is linear in the
    // coalition z, so the Shapley value of superpixel S is exactly w_S.(x_S - ref_S), and least squares
    // on any full-rank set of coalitions recovers it (tolerance 1e-4: f32 forward passes).
    let (model, w, _) = linear();
    let x = x_values();
    let seg = quadrants();
    let reference = 0.1f32;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let img = image(&x, S);
    let run = perturbed(&model, &img, &seg, reference);
    let map = run.kernel_shap(200, &mut rng).unwrap().0;
    let mut shapley = vec![0f32; seg.n_segments];
    for p in 0..16 {
        shapley[seg.labels[p] as usize] += w[p] * (x[p] - reference);
    }
    let expected: Vec<f32> = seg.labels.iter().map(|&l| shapley[l as usize]).collect();
    assert_close(&map, &expected, 1e-4, "Kernel SHAP");
}

#[test]
fn lime_ranks_features_by_their_true_contribution() {
    // Same linear model: the ridge coefficients shrink but keep the order of the true contributions
    // w_S.(x_S - ref_S).
    let (model, w, _) = linear();
    let x = x_values();
    let seg = quadrants();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let cfg = LimeConfig::default();
    let img = image(&x, S);
    let run = perturbed(&model, &img, &seg, 0.0);
    let map = run.lime(400, &cfg, &mut rng).unwrap().0;
    let mut truth = vec![0f32; 4];
    let mut coef = vec![0f32; 4];
    for p in 0..16 {
        truth[seg.labels[p] as usize] += w[p] * x[p];
        coef[seg.labels[p] as usize] = map[p];
    }
    let order = |v: &[f32]| {
        let mut i: Vec<usize> = (0..v.len()).collect();
        i.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        i
    };
    assert_eq!(
        order(&coef),
        order(&truth),
        "LIME {coef:?} vs truth {truth:?}"
    );
    // Each superpixel's coefficient is painted on all its pixels.
    for p in 0..16 {
        assert_eq!(map[p], coef[seg.labels[p] as usize]);
    }
}

#[test]
fn ridge_with_zero_penalty_is_least_squares() {
    // y = 1 + 2 z0 - 3 z1 exactly: coefficients (2, -3) with any weights.
    let masks = [0., 0., 1., 0., 0., 1., 1., 1., 1., 0.];
    let y: Vec<f64> = masks
        .chunks(2)
        .map(|z| 1.0 + 2.0 * z[0] as f64 - 3.0 * z[1] as f64)
        .collect();
    let c = perturbation::ridge(&masks, &y, &[1.0, 2.0, 0.5, 1.0, 3.0], 2, 0.0).unwrap();
    assert!(
        (c[0] - 2.0).abs() < 1e-9 && (c[1] + 3.0).abs() < 1e-9,
        "{c:?}"
    );
    // alpha > 0 shrinks towards zero
    let c2 = perturbation::ridge(&masks, &y, &[1.0; 5], 2, 2.0).unwrap();
    assert!(c2[0].abs() < 2.0 && c2[1].abs() < 3.0);
}

#[test]
fn guided_backprop_differs_from_the_gradient_as_computed_by_hand() {
    // x = (1, 2, -1, 0.5) as a 2x2 image; hidden h = ReLU(W1 x) with W1 rows e0, e1, e2 so the
    // pre-activations are (1, 2, -1); f_0 = (1, -1, 2) . h.
    // Gradient: unit 3 is off (pre-activation < 0): df/dx = 1*e0 - 1*e1 = (1, -1, 0, 0).
    // Guided: grad at the ReLU output (1, -1, 2) -> relu -> (1, 0, 2) -> times 1[pre > 0] = (1, 0, 0)
    // -> W1^T (1, 0, 0) = (1, 0, 0, 0).
    let m = dense_relu_dense(
        &[1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0.],
        &[0., 0., 0.],
        &[1., -1., 2., 0., 0., 0.],
        &[0., 0.],
    );
    let x = image(&[1., 2., -1., 0.5], 2);
    let guided = gradient::guided_backprop(&m, &x, &[0]).unwrap().remove(0);
    let model = Model::new(m);
    let grad = gradient::gradient(&model, &x, &[0]).unwrap().remove(0);
    assert_eq!(grad, vec![1., -1., 0., 0.]);
    assert_eq!(guided, vec![1., 0., 0., 0.]);
}

#[test]
fn gradcam_matches_its_closed_form_on_a_hand_built_conv_net() {
    // conv 1x1 with weights (1, -1), no bias -> ReLU -> global average pool over 4x4 -> dense v = (2, 1).
    // A_k = ReLU(w_k x); f = sum_k v_k mean(A_k), so dA_k = v_k / 16 everywhere, weights a_k = v_k / 16,
    // map = ReLU(sum_k a_k A_k) = (2 ReLU(x) + ReLU(-x)) / 16 at 4x4; bicubic to the same size is the
    // identity.
    let m = cnn(
        &[
            LayerSpec::Conv {
                out: 2,
                kernel: 1,
                padding: Some(0),
            },
            LayerSpec::Relu,
            LayerSpec::GlobalAvgPool,
            LayerSpec::Dense { out: 2 },
        ],
        1,
        4,
        2,
    );
    set(&m, "0.weight", &[1., -1.]);
    set(&m, "0.bias", &[0., 0.]);
    set(&m, "3.weight", &[2., 1., 0., 0.]);
    set(&m, "3.bias", &[0., 0.]);
    let xs: Vec<f32> = (0..16).map(|i| (i as f32 - 6.0) / 4.0).collect();
    let map = gradcam::gradcam(&m, &image(&xs, 4), &[0], CamLayer::default())
        .unwrap()
        .remove(0);
    let expected: Vec<f32> = xs
        .iter()
        .map(|&v| (2.0 * v.max(0.0) + (-v).max(0.0)) / 16.0)
        .collect();
    assert_close(&map, &expected, 1e-6, "Grad-CAM");
    // Explaining class 1 (all-zero dense row) gives an all-zero map: legitimate, no NaN.
    let zero = gradcam::gradcam(&m, &image(&xs, 4), &[1], CamLayer::default())
        .unwrap()
        .remove(0);
    assert!(zero.iter().all(|&v| v == 0.0));
}

#[test]
fn torchscript_models_get_gradient_methods_and_a_clear_refusal_for_the_others() {
    let dir = tempdir();
    let (mut native, w, _) = linear();
    native.vs.freeze();
    let probe = Tensor::zeros([1, 1, S, S], (Kind::Float, Device::Cpu));
    let n = &native;
    let module = tch::CModule::create_by_tracing("Lin", "forward", &[probe], &mut |xs| {
        vec![n.forward_t(&xs[0], false)]
    })
    .unwrap();
    let path = dir.path().join("lin.pt");
    module.save(&path).unwrap();
    let ts = Model::load_torchscript(&path, n.input.clone()).unwrap();
    let cfg = ExplainConfig {
        methods: vec![],
        ..Default::default()
    };
    let x = image(&x_values(), S);
    let input = ImageInput {
        id: "t",
        x: &x,
        grey: &x_values(),
        target: 1,
        segmentation: Default::default(),
    };
    let g = attribution::explain(&ts, &cfg, Method::Gradient, &input).unwrap();
    assert_close(&g.map, &w, 1e-6, "TorchScript gradient");
    for m in [Method::Gradcam, Method::GuidedBackprop] {
        let e = attribution::explain(&ts, &cfg, m, &input)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not supported for this model, because"), "{e}");
        // Why, and what to do instead.
        assert!(
            e.contains("opaque to tch")
                && e.contains("torch.onnx.export")
                && e.contains("model.onnx"),
            "{e}"
        );
    }
}

#[test]
fn random_draws_depend_only_on_image_method_and_seed() {
    use rand::Rng;
    let a: u64 = attribution::rng_for("img", Method::Lime, 1).gen();
    let b: u64 = attribution::rng_for("img", Method::Lime, 1).gen();
    let c: u64 = attribution::rng_for("img", Method::KernelShap, 1).gen();
    let d: u64 = attribution::rng_for("img", Method::Lime, 2).gen();
    assert_eq!(a, b);
    assert!(a != c && a != d);
}
