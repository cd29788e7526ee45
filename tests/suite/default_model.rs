//! The bundled default CNN on real Br35H images (needs `make setup`'s data; the weights ship in models/).
use tumor_audit::attribution::Precision;
use tumor_audit::attribution::{self, Method};
use tumor_audit::commands::{prepare_samples, Plan};
use tumor_audit::config::Settings;
use tumor_audit::dataset::{Dataset, Limits, Sample};
use tumor_audit::evaluate::argmax;
use tumor_audit::model::Classifier;
use tumor_audit::preprocess::{stack_inputs, Prepared};

use super::support::models::{explain_input, load_native, max_abs, max_diff};
use super::support::repo;

/// The bundled CNN as `ctx` configures it (what `Plan::load_model` builds), as the concrete
/// native network whose converted twins the lever tests compare.
fn bundled_native(ctx: &Plan) -> tumor_audit::model::NativeCnn {
    load_native(&ctx.settings, ctx.input_spec(), &ctx.settings.model.weights)
}

fn context(overrides: &[&str]) -> Plan {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let mut settings = Settings::load(&repo("config.yml"), &o).expect("config.yml");
    settings.model.weights = repo("models/cnn128-br35h.safetensors");
    Plan::from_settings(settings, tch::Device::Cpu).expect("classes and target")
}

/// `samples` read and preprocessed as `ctx` configures: (sample, id, prepared) of each readable one,
/// and the skipped ones.
fn prepare(ctx: &Plan, samples: &[Sample]) -> PreparedSamples {
    prepare_samples(
        samples,
        &ctx.settings.donnees.image,
        Limits::default(),
        "test",
    )
}

type PreparedSamples = (
    Vec<(Sample, String, Prepared)>,
    Vec<tumor_audit::dataset::Skipped>,
);

/// `n` real Br35H images, alternating classes, from the raw folder.
fn real_images(ctx: &Plan, n: usize) -> Vec<(String, Prepared)> {
    let ds = Dataset::scan(&repo("data/raw/br35h"), &ctx.classes).expect("run `make data` first");
    let picked: Vec<_> = (0..n)
        .map(|i| ds.samples[(i * 997) % ds.samples.len()].clone())
        .collect();
    let (ok, skipped) = prepare(ctx, &picked);
    assert!(skipped.is_empty(), "{skipped:?}");
    ok.into_iter().map(|(_, id, p)| (id, p)).collect()
}

#[test]
fn integrated_gradients_completeness_on_the_trained_cnn_is_under_one_percent_at_80_steps() {
    // The float32 path (the mixed-precision one is compared with it in
    // `mixed_precision_gradients_agree_with_float32`).
    let ctx = context(&["explain.profile=seed", "explain.gradient_precision=f32"]);
    let model = ctx.load_model().expect("bundled weights");
    let mut errors = Vec::new();
    for (id, p) in real_images(&ctx, 10) {
        let x = stack_inputs(&[&p]);
        let target =
            argmax(&Vec::<f32>::try_from(model.forward(&x).flatten(0, -1)).unwrap()) as i64;
        let input = explain_input(&id, &x, &p.grey, target);
        let a = attribution::explain(
            &model,
            &ctx.settings.explain,
            Method::IntegratedGradients,
            &input,
        )
        .unwrap();
        errors.push(a.completeness_error.unwrap());
    }
    errors.sort_by(|a, b| a.total_cmp(b));
    let median = (errors[4] + errors[5]) / 2.0;
    eprintln!(
        "IG completeness error at 80 steps on 10 real images: median {:.4}%, max {:.4}%",
        100.0 * median,
        100.0 * errors[9]
    );
    assert!(median < 0.01, "median completeness error {median}");
}

fn six_maps(
    model: &tumor_audit::model::Model,
    ctx: &Plan,
    img: &(String, Prepared),
) -> Vec<Vec<f32>> {
    let (id, p) = img;
    let x = stack_inputs(&[p]);
    let input = explain_input(id, &x, &p.grey, 1);
    Method::SIX
        .iter()
        .map(|&m| {
            attribution::explain(model, &ctx.settings.explain, m, &input)
                .unwrap()
                .map
        })
        .collect()
}

#[test]
fn maps_depend_only_on_image_method_and_seed_not_on_order_or_threads() {
    // Same image, method and seed: bit-identical maps in another order and from another thread
    // (the seeds come from the image id, never from scheduling). libtorch's own intra-op thread count
    // changes how its kernels split sums, so across 1 vs 2 libtorch threads the maps agree to float
    // rounding only (checked: < 1e-5 of the map's scale).
    let ctx = context(&[
        "explain.lime.samples=64",
        "explain.kernel_shap.samples=64",
        "explain.smoothgrad.samples=8",
        "explain.integrated_gradients.steps=8",
    ]);
    let model = ctx.load_model().unwrap();
    let imgs = real_images(&ctx, 2);
    let maps_of = |i: usize| six_maps(&model, &ctx, &imgs[i]);
    let forward = [maps_of(0), maps_of(1)];
    let backward = [maps_of(1), maps_of(0)];
    assert!(
        forward[0] == backward[1] && forward[1] == backward[0],
        "order changed a map"
    );
    // A worker thread with its own copy of the model (tch tensors are not Sync), as the audit runs.
    let from_thread = std::thread::scope(|s| {
        s.spawn(|| six_maps(&ctx.load_model().unwrap(), &ctx, &imgs[0]))
            .join()
            .unwrap()
    });
    assert!(from_thread == forward[0], "another thread changed a map");
    let threads = tch::get_num_threads();
    tch::set_num_threads(if threads == 1 { 2 } else { 1 });
    let other = maps_of(0);
    tch::set_num_threads(threads);
    for (k, (a, b)) in forward[0].iter().zip(&other).enumerate() {
        let (scale, d) = (max_abs(a).max(1e-12), max_diff(a, b));
        assert!(
            d <= 1e-5 * scale,
            "{}: {d} vs scale {scale}",
            Method::SIX[k].name()
        );
    }
}

#[test]
fn default_model_beats_chance_clearly_on_real_images() {
    // A sanity check of the shipped weights: 40 real images, most classified correctly.
    let ctx = context(&[]);
    let model = ctx.load_model().unwrap();
    let ds =
        Dataset::scan(&repo("data/br35h/Testing"), &ctx.classes).expect("run `make data` first");
    let picked: Vec<_> = ds
        .samples
        .iter()
        .step_by(ds.samples.len() / 40)
        .cloned()
        .collect();
    let (ok, _) = prepare(&ctx, &picked);
    let refs: Vec<_> = ok.iter().map(|(_, _, p)| p).collect();
    let probs = model.predict_probs(&stack_inputs(&refs)).unwrap();
    let correct = ok
        .iter()
        .zip(&probs)
        .filter(|((s, _, _), p)| s.label == Some(argmax(p)))
        .count();
    assert!(
        correct as f64 >= 0.85 * ok.len() as f64,
        "{correct}/{}",
        ok.len()
    );
}

/// The performance levers change no deterministic result: the gradient methods run the plain path as
/// before; the channels-last copy used for the forward-only batches gives the plain model's logits to
/// float rounding; and the LIME / SHAP batch size and evaluating duplicate masks once give the same
/// maps (< 1e-5 of the map's scale) for the same seeds. bf16 forwards are the one lever
/// that changes numbers: for them the same seed gives maps whose ranks agree far better than two
/// seeds of the reference do (the statistical comparison on 20 images is in docs/performance.md).
#[test]
fn performance_levers_keep_the_reference_maps() {
    use tumor_audit::model::Model;
    let reference_ctx = context(&[
        "explain.profile=seed",
        "explain.perturbation_precision=f32",
        "explain.gradient_precision=f32",
        "explain.perturbation_batch_size=64",
        "explain.lime.samples=300",
        "explain.kernel_shap.samples=300",
    ]);
    let fast_ctx = context(&[
        "explain.profile=seed",
        "explain.perturbation_precision=f32",
        "explain.gradient_precision=f32",
        "explain.perturbation_batch_size=256",
        "explain.lime.samples=300",
        "explain.kernel_shap.samples=300",
    ]);
    let plain = Model::new(bundled_native(&reference_ctx));
    let fast = fast_ctx.load_model().unwrap();
    {
        let imgs = real_images(&reference_ctx, 8);
        let refs: Vec<_> = imgs.iter().map(|(_, p)| p).collect();
        let x = stack_inputs(&refs);
        let _guard = tch::no_grad_guard();
        let a = Vec::<f32>::try_from(plain.forward(&x).flatten(0, -1)).unwrap();
        let fast_native = bundled_native(&fast_ctx);
        let cl = fast_native.channels_last_f32().unwrap();
        let b = Vec::<f32>::try_from(cl.forward_t(&x, false).flatten(0, -1)).unwrap();
        let (scale, d) = (max_abs(&a), max_diff(&a, &b));
        assert!(
            d <= 1e-5 * scale,
            "channels-last logits differ by {d} (scale {scale})"
        );
    }
    let methods = [
        Method::GuidedBackprop,
        Method::IntegratedGradients,
        Method::Smoothgrad,
        Method::Gradcam,
        Method::Gradient,
        Method::Lime,
        Method::KernelShap,
    ];
    for img in real_images(&reference_ctx, 3) {
        let (id, p) = &img;
        let x = stack_inputs(&[p]);
        let input = || explain_input(id, &x, &p.grey, 1);
        for m in methods {
            let a = attribution::explain(&plain, &reference_ctx.settings.explain, m, &input())
                .unwrap()
                .map;
            let b = attribution::explain(&fast, &fast_ctx.settings.explain, m, &input())
                .unwrap()
                .map;
            let (scale, d) = (max_abs(&a).max(1e-12), max_diff(&a, &b));
            assert!(
                d <= 1e-5 * scale,
                "{}: max difference {d}, scale {scale}",
                m.name()
            );
        }
        // bf16 forwards: same seed, ranks agree closely (Spearman over pixels).
        let mut bf16_cfg = fast_ctx.settings.explain.clone();
        bf16_cfg.perturbation_precision = Precision::Bf16;
        for m in [Method::Lime, Method::KernelShap] {
            let a = attribution::explain(&fast, &fast_ctx.settings.explain, m, &input())
                .unwrap()
                .map;
            let b = attribution::explain(&fast, &bf16_cfg, m, &input())
                .unwrap()
                .map;
            let rho = tumor_audit::metrics::spearman(&a, &b);
            eprintln!("{} bf16 vs f32, same seed: Spearman {rho:.4}", m.name());
            assert!(rho > 0.9, "{}: Spearman {rho}", m.name());
        }
    }
}

/// The bf16 path runs at every batch size a perturbation run can produce (dedupe leaves odd sizes) and
/// its logits stay close to float32's. (oneDNN's bf16 AMX matmul crashed for some small batches, which
/// is why the dense layers stay in float32.)
#[test]
fn bf16_convolutions_run_at_every_small_batch_size_close_to_f32() {
    let ctx = context(&[]);
    let model = ctx.load_model().unwrap();
    let native = bundled_native(&ctx);
    let imgs = real_images(&ctx, 4);
    let refs: Vec<_> = imgs.iter().map(|(_, p)| p).collect();
    let base = stack_inputs(&refs);
    for n in 1..=40i64 {
        let x = base.repeat([(n + 3) / 4, 1, 1, 1]).narrow(0, 0, n);
        let _guard = tch::no_grad_guard();
        let a = Vec::<f32>::try_from(model.forward(&x).flatten(0, -1)).unwrap();
        let b =
            Vec::<f32>::try_from(native.forward_bf16_convs(&x).unwrap().flatten(0, -1)).unwrap();
        let (scale, d) = (max_abs(&a), max_diff(&a, &b));
        assert!(
            d <= 0.05 * scale,
            "batch {n}: bf16 logits differ by {d} (scale {scale})"
        );
    }
}

/// The pre-packed bf16 path (oneDNN's blocked layout) runs at every batch size a perturbation run can
/// produce, gives float32's logits to bf16 rounding (as the channels-last bf16 path does), and agrees
/// with the channels-last bf16 path more closely still (same rounding points, another summation order).
#[test]
fn prepacked_bf16_forward_runs_at_every_small_batch_size_close_to_f32() {
    let ctx = context(&[]);
    let model = ctx.load_model().unwrap();
    let native = bundled_native(&ctx);
    assert!(native.can_prepack());
    let imgs = real_images(&ctx, 4);
    let refs: Vec<_> = imgs.iter().map(|(_, p)| p).collect();
    let base = stack_inputs(&refs);
    for n in (1..=40i64).chain([64, 65, 128]) {
        let x = base.repeat([(n + 3) / 4, 1, 1, 1]).narrow(0, 0, n);
        let _guard = tch::no_grad_guard();
        let f32_logits = Vec::<f32>::try_from(model.forward(&x).flatten(0, -1)).unwrap();
        let cl =
            Vec::<f32>::try_from(native.forward_bf16_convs(&x).unwrap().flatten(0, -1)).unwrap();
        let packed =
            Vec::<f32>::try_from(native.forward_bf16_prepacked(&x).unwrap().flatten(0, -1))
                .unwrap();
        let scale = max_abs(&f32_logits);
        let (d32, dcl) = (max_diff(&f32_logits, &packed), max_diff(&f32_logits, &cl));
        assert!(
            d32 <= 0.05 * scale,
            "batch {n}: pre-packed bf16 logits differ by {d32} (scale {scale})"
        );
        assert!(
            max_diff(&cl, &packed) <= dcl.max(0.01 * scale),
            "batch {n}: pre-packed vs channels-last bf16 {} (channels-last vs f32 {dcl})",
            max_diff(&cl, &packed)
        );
    }
}

/// Mixed precision for Integrated Gradients and SmoothGrad (bf16 convolutions, float32 head, gradients
/// and maps): on real images the maps rank pixels as the float32 maps do (Spearman > 0.95; the
/// distribution on 20 images is in docs/performance.md), and IG's completeness error stays that of the
/// float32 path within half a percentage point (median over 10 images).
#[test]
fn mixed_precision_gradients_agree_with_float32() {
    if !tumor_audit::model::cpu_has_fast_bf16() {
        eprintln!("no hardware bfloat16 here: the mixed path is checked for running only");
    }
    let f32_ctx = context(&["explain.profile=seed", "explain.gradient_precision=f32"]);
    let mixed_ctx = context(&["explain.profile=seed", "explain.gradient_precision=bf16"]);
    let model = f32_ctx.load_model().unwrap();
    let (mut e32, mut e16) = (Vec::new(), Vec::new());
    for (id, p) in real_images(&f32_ctx, 10) {
        let x = stack_inputs(&[&p]);
        let input = || explain_input(&id, &x, &p.grey, 1);
        for m in [Method::IntegratedGradients, Method::Smoothgrad] {
            let a = attribution::explain(&model, &f32_ctx.settings.explain, m, &input()).unwrap();
            let b = attribution::explain(&model, &mixed_ctx.settings.explain, m, &input()).unwrap();
            let rho = tumor_audit::metrics::spearman(&a.map, &b.map);
            assert!(rho > 0.95, "{}: Spearman bf16 vs f32 {rho}", m.name());
            // SmoothGrad's split halves come through the mixed forward too.
            assert_eq!(a.reproducibility.is_some(), b.reproducibility.is_some());
            e32.extend(a.completeness_error);
            e16.extend(b.completeness_error);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[4] + v[5]) / 2.0
    };
    let (m32, m16) = (median(&mut e32), median(&mut e16));
    eprintln!(
        "IG completeness error, median of 10: f32 {:.3}%, mixed bf16 {:.3}%",
        100.0 * m32,
        100.0 * m16
    );
    assert!(m16 <= m32 + 0.005, "mixed {m16} vs f32 {m32}");
}

/// LIME and Kernel SHAP on shared evaluations keep their split-half reproducibility (each method
/// fitted again on each half of the shared draws), as when they run apart: a figure in [-1, 1] for
/// both on real images, where the superpixels are many.
#[test]
fn shared_evaluations_store_the_split_half_reproducibility() {
    let ctx = context(&[
        "explain.shared_evaluations=true",
        "explain.lime.samples=200",
        "explain.kernel_shap.samples=200",
    ]);
    let apart = context(&[
        "explain.lime.samples=200",
        "explain.kernel_shap.samples=200",
    ]);
    let model = ctx.load_model().unwrap();
    let methods = [Method::Lime, Method::KernelShap];
    for (id, p) in real_images(&ctx, 2) {
        let x = stack_inputs(&[&p]);
        let input = explain_input(&id, &x, &p.grey, 1);
        for (m, a) in attribution::explain_image(&model, &ctx.settings.explain, &methods, &input) {
            let a = a.unwrap();
            assert!(
                a.segments.unwrap() >= 2,
                "{id}: the shared path needs 2 superpixels"
            );
            let r = a.reproducibility.unwrap_or(f64::NAN);
            assert!(
                (-1.0..=1.0).contains(&r),
                "{id} {}: reproducibility {r}",
                m.name()
            );
            let alone = attribution::explain(&model, &apart.settings.explain, m, &input).unwrap();
            eprintln!(
                "{id} {}: reproducibility shared {r:.3}, apart {:.3}",
                m.name(),
                alone.reproducibility.unwrap_or(f64::NAN)
            );
        }
    }
}
