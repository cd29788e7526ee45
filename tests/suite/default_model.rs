//! The bundled default CNN on real Br35H images (needs `make setup`'s data; the weights ship in models/).
use tumor_audit::attribution::{self, ImageInput, Method};
use tumor_audit::commands::{prepare_samples, stack_inputs, Context};
use tumor_audit::config::Settings;
use tumor_audit::dataset::{Dataset, Limits};
use tumor_audit::evaluate::argmax;

use super::util::repo;

fn context(overrides: &[&str]) -> Context {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let mut settings = Settings::load(&repo("config.yml"), &o).expect("config.yml");
    settings.model.weights = repo("models/cnn128-br35h.safetensors");
    Context {
        settings,
        device: tch::Device::Cpu,
        classes: vec!["no".into(), "yes".into()],
    }
}

/// `n` real Br35H images, alternating classes, from the raw folder.
fn real_images(ctx: &Context, n: usize) -> Vec<(String, tumor_audit::preprocess::Prepared)> {
    let ds = Dataset::scan(&repo("data/raw/br35h"), &ctx.classes).expect("run `make data` first");
    let picked: Vec<_> = (0..n)
        .map(|i| ds.samples[(i * 997) % ds.samples.len()].clone())
        .collect();
    let (ok, skipped) = prepare_samples(
        &picked,
        &ctx.settings.donnees.image,
        Limits::default(),
        "test",
    );
    assert!(skipped.is_empty(), "{skipped:?}");
    ok.into_iter().map(|(_, id, p)| (id, p)).collect()
}

#[test]
fn integrated_gradients_completeness_on_the_trained_cnn_is_under_one_percent_at_80_steps() {
    let ctx = context(&["explain.profile=seed"]);
    let model = ctx.load_model().expect("bundled weights");
    let mut errors = Vec::new();
    for (id, p) in real_images(&ctx, 10) {
        let x = stack_inputs(&[&p]);
        let target =
            argmax(&Vec::<f32>::try_from(model.forward(&x).flatten(0, -1)).unwrap()) as i64;
        let input = ImageInput {
            id: &id,
            x: &x,
            grey: &p.grey,
            target,
            segmentation: Default::default(),
        };
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
    ctx: &Context,
    img: &(String, tumor_audit::preprocess::Prepared),
) -> Vec<Vec<f32>> {
    let (id, p) = img;
    let x = stack_inputs(&[p]);
    let input = ImageInput {
        id,
        x: &x,
        grey: &p.grey,
        target: 1,
        segmentation: Default::default(),
    };
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
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let d = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
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
    let (ok, _) = prepare_samples(
        &picked,
        &ctx.settings.donnees.image,
        Limits::default(),
        "test",
    );
    let refs: Vec<_> = ok.iter().map(|(_, _, p)| p).collect();
    let probs = tumor_audit::commands::predict_probs(&model, &stack_inputs(&refs)).unwrap();
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
