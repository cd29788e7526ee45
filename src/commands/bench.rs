//! `tumor-audit bench`: per-method timings with FLOP counts and the measured floor, the levers'
//! equivalence, a per-layer profile and the end-to-end audit time.
use std::time::Instant;

use anyhow::bail;

use super::{prepare_samples, Plan};
use crate::attribution::{self, ExplainConfig, Method, Precision, Profile, Subject};
use crate::bench::Peak;
use crate::cli::BenchArgs;
use crate::dataset::{self, Dataset};
use crate::metrics::median;
use crate::model::{Classifier, Model};
use crate::preprocess::Prepared;

pub fn run(ctx: &Plan, args: &BenchArgs) -> anyhow::Result<()> {
    let crate::plan::ModelPlan {
        model,
        explain: cfg,
        ..
    } = ctx.model_plan(&args.methods)?;
    let samples: Vec<dataset::Sample> = if args.inputs.is_empty() {
        let ds = Dataset::scan(&ctx.test_dir(), &ctx.classes)?;
        // Round robin over classes so that both classes are timed.
        let mut by_class: Vec<Vec<dataset::Sample>> = vec![Vec::new(); ctx.classes.len()];
        ds.samples
            .into_iter()
            .for_each(|s| by_class[s.label.unwrap_or(0)].push(s));
        (0..args.images)
            .filter_map(|i| {
                by_class[i % by_class.len()]
                    .get(i / by_class.len())
                    .cloned()
            })
            .collect()
    } else {
        Dataset::from_paths(&args.inputs)?.samples
    };
    let (ok, _) = prepare_samples(
        &samples,
        &ctx.settings.donnees.image,
        ctx.limits(),
        "decoding",
    );
    if ok.is_empty() {
        bail!("no usable image to benchmark");
    }
    let e = &cfg;
    println!("CPU: {}", crate::bench::cpu_description());
    println!(
        "profile {}: IG {} steps, SmoothGrad {} samples, LIME {} samples, Kernel SHAP {} samples, batch {}; {} image(s) x {} repeat(s); {} libtorch threads; {}",
        e.profile.name(),
        e.integrated_gradients.steps.unwrap_or(0),
        e.smoothgrad.samples.unwrap_or(0),
        e.lime.samples.unwrap_or(0),
        e.kernel_shap.samples.unwrap_or(0),
        e.batch_size,
        ok.len(),
        args.repeats,
        tch::get_num_threads(),
        model.describe()
    );
    // With shared evaluations LIME and Kernel SHAP are one computation: timed together, on the LIME
    // row (the Kernel SHAP row then reads 0).
    let shared = cfg.shared_evaluations
        && cfg.methods.contains(&Method::Lime)
        && cfg.methods.contains(&Method::KernelShap);
    let run_one = |method: Method, i: usize| -> anyhow::Result<f64> {
        let (sample, id, prep) = &ok[i];
        let subject = Subject::new(&model, prep, sample.label, ctx.target)?;
        let input = subject.input(id, &prep.grey);
        let t0 = Instant::now();
        match method {
            Method::Lime if shared => {
                let both = [Method::Lime, Method::KernelShap];
                for (_, r) in attribution::explain_image(&model, &cfg, &both, &input) {
                    r?;
                }
            }
            Method::KernelShap if shared => {}
            _ => {
                attribution::explain(&model, &cfg, method, &input)?;
            }
        }
        Ok(t0.elapsed().as_secs_f64())
    };
    // Warm-up: one image through every method (allocator, oneDNN kernel selection).
    for &m in &cfg.methods {
        run_one(m, 0)?;
    }
    let peak = crate::bench::measure_peak(&model, cfg.batch_size as i64);
    let fwd = model.forward_flops();
    // FLOPs are counted from the native CNN's layer list; an imported graph has none to count.
    let forward = match fwd {
        Some(f) => format!(
            "the model's forward alone at batch {} {:.1} GFLOP/s; one forward {:.3} GFLOP",
            cfg.batch_size,
            peak.model_forward_gflops,
            f / 1e9
        ),
        None => "FLOPs not counted for an imported model (only the native CNN's layers are)".into(),
    };
    println!(
        "measured here: matmul 2048^3 {:.1} GFLOP/s (bf16: {}); {forward}",
        peak.matmul_gflops,
        if peak.matmul_bf16_gflops.is_nan() {
            "not measured, no hardware bfloat16 on this CPU".to_string()
        } else {
            format!("{:.1}", peak.matmul_bf16_gflops)
        },
    );
    println!(
        "{:<22} {:>9} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "method",
        "median s",
        "min s",
        "max s",
        "images/s",
        "GFLOP/img",
        "GFLOP/s",
        "%matmul",
        "%model"
    );
    let mut total_median = 0.0;
    let mut total_flops = 0.0;
    for &m in &cfg.methods {
        if shared && m == Method::KernelShap {
            println!("{:<22} (in the LIME row: shared evaluations)", m.title());
            total_flops += fwd.map_or(f64::NAN, |f| crate::bench::method_flops(&cfg, m, f));
            continue;
        }
        let mut t = Vec::new();
        for i in 0..ok.len() {
            for _ in 0..args.repeats {
                t.push(run_one(m, i)?);
            }
        }
        let med = median(&t).unwrap_or(0.0);
        total_median += med;
        let (lo, hi) = t
            .iter()
            .fold((f64::INFINITY, 0f64), |(a, b), &v| (a.min(v), b.max(v)));
        let mut flops = fwd.map(|f| crate::bench::method_flops(&cfg, m, f));
        if shared && m == Method::Lime {
            // Half of each method's forwards, done once for both.
            let shap = fwd.map_or(f64::NAN, |f| {
                crate::bench::method_flops(&cfg, Method::KernelShap, f)
            });
            flops = flops.map(|f| (f + shap) / 2.0);
            total_flops -= shap;
        }
        total_flops += flops.unwrap_or(f64::NAN);
        println!(
            "{}",
            bench_row(m.title(), med, Some((lo, hi)), flops, &peak)
        );
    }
    println!(
        "{}",
        bench_row(
            "all methods",
            total_median,
            None,
            fwd.map(|_| total_flops),
            &peak
        )
    );
    if args.equivalence {
        bench_equivalence(ctx, &model, &cfg, &ok)?;
    }
    if args.layers {
        let b = cfg.perturbation_batch_size as i64;
        let rows = model.layer_profile(b, 5)?;
        println!("forward time per layer, batch {b} (ms): f32 as loaded, f32 channels-last, bf16 channels-last");
        for (name, t) in rows {
            println!(
                "{name:<22} {:>9.2} {:>9.2} {:>9.2}",
                1e3 * t[0],
                1e3 * t[1],
                1e3 * t[2]
            );
        }
    }
    if args.audit {
        bench_audit(
            ctx,
            &cfg,
            &samples,
            args.repeats,
            &peak,
            fwd.map(|_| total_flops),
        )?;
    }
    Ok(())
}

fn bench_row(
    name: &str,
    secs: f64,
    spread: Option<(f64, f64)>,
    flops: Option<f64>,
    peak: &Peak,
) -> String {
    let (lo, hi) = spread.map_or((String::new(), String::new()), |(a, b)| {
        (format!("{a:.3}"), format!("{b:.3}"))
    });
    let per_s = flops.map(|f| f / secs.max(1e-12) / 1e9);
    let fmt = |v: Option<f64>, prec: usize| v.map_or("-".into(), |v| format!("{v:.prec$}"));
    format!(
        "{:<22} {:>9.3} {:>8} {:>8} {:>9.3} {:>9} {:>8} {:>8} {:>8}",
        name,
        secs,
        lo,
        hi,
        1.0 / secs.max(1e-12),
        fmt(flops.map(|f| f / 1e9), 1),
        fmt(per_s, 1),
        fmt(per_s.map(|g| 100.0 * g / peak.matmul_gflops), 0),
        fmt(per_s.map(|g| 100.0 * g / peak.model_forward_gflops), 0),
    )
}

/// The methods with their configured levers (bf16 forwards and gradients, batch size, shared
/// evaluations) against the plain float32 path: Spearman correlation of the optimised map with the
/// reference map of the same seed, next to that of two reference maps that differ by what the
/// reference itself leaves to chance (another seed; for Integrated Gradients, which draws nothing, the
/// default profile's 64 path steps instead of 80). Integrated Gradients' completeness error is given
/// for both paths.
fn bench_equivalence(
    ctx: &Plan,
    model: &Model,
    cfg: &ExplainConfig,
    images: &[(dataset::Sample, String, Prepared)],
) -> anyhow::Result<()> {
    let mut reference = cfg.clone();
    reference.perturbation_precision = Precision::F32;
    reference.gradient_precision = Precision::F32;
    reference.perturbation_batch_size = 64;
    reference.shared_evaluations = false;
    let mut other_seed = reference.clone();
    other_seed.seed = cfg.seed.wrapping_add(1);
    let mut opt_other_seed = cfg.clone();
    opt_other_seed.seed = cfg.seed.wrapping_add(1);
    let mut other_steps = reference.clone();
    other_steps.integrated_gradients.steps = Some(Profile::Default.budget().0);
    let methods: Vec<Method> = cfg
        .methods
        .iter()
        .copied()
        .filter(|&m| m.is_stochastic() || m == Method::IntegratedGradients)
        .collect();
    println!(
        "equivalence on {} image(s): Spearman(optimised, reference, same seed) vs Spearman(reference, reference with another seed; IG: with {} steps); optimised = {} perturbation forwards, {} IG / SmoothGrad, batch {}, {}",
        images.len(),
        Profile::Default.budget().0,
        if cfg.bf16_forwards(model) { "bf16" } else { "f32" },
        if cfg.bf16_gradients(model) { "mixed bf16" } else { "f32" },
        cfg.perturbation_batch_size,
        if cfg.shared_evaluations { "LIME and Kernel SHAP on shared evaluations" } else { "own evaluations per method" },
    );
    println!(
        "{:<22} {:>30} {:>30}",
        "method", "opt vs ref: min / median / max", "ref vs ref': min / median / max"
    );
    let q = |v: &[f64]| {
        format!(
            "{:.3} / {:.3} / {:.3}",
            v.iter().cloned().fold(f64::INFINITY, f64::min),
            median(v).unwrap_or(f64::NAN),
            v.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
        )
    };
    for m in methods {
        let (mut opt, mut refs) = (Vec::new(), Vec::new());
        let (mut err_opt, mut err_ref) = (Vec::new(), Vec::new());
        // Shared evaluations reuse the first half of the reference's own draws (same seed), which
        // flatters the same-seed comparison: the optimised map with another seed, against the
        // reference, compares independent draws as the ref vs ref' column does.
        let shared_pair = cfg.shared_evaluations && matches!(m, Method::Lime | Method::KernelShap);
        let mut indep = Vec::new();
        let spread = if m == Method::IntegratedGradients {
            &other_steps
        } else {
            &other_seed
        };
        for (sample, id, prep) in images {
            let subject = Subject::new(model, prep, sample.label, ctx.target)?;
            let input = subject.input(id, &prep.grey);
            let a = attribution::explain(model, &reference, m, &input)?;
            let b = attribution::explain(model, spread, m, &input)?.map;
            let o = explain_one(model, cfg, m, &input)?;
            opt.push(crate::metrics::spearman(&a.map, &o.map) as f64);
            if shared_pair {
                let o2 = explain_one(model, &opt_other_seed, m, &input)?;
                indep.push(crate::metrics::spearman(&a.map, &o2.map) as f64);
            }
            refs.push(crate::metrics::spearman(&a.map, &b) as f64);
            err_ref.extend(a.completeness_error);
            err_opt.extend(o.completeness_error);
        }
        println!("{:<22} {:>30} {:>30}", m.title(), q(&opt), q(&refs));
        if !indep.is_empty() {
            println!(
                "{:<22} {:>30} {:>30}",
                "  opt, other seed",
                q(&indep),
                "(vs ref: independent draws)"
            );
        }
        if !err_ref.is_empty() {
            let pct: Vec<f64> = err_opt.iter().map(|e| 100.0 * e).collect();
            let pct_ref: Vec<f64> = err_ref.iter().map(|e| 100.0 * e).collect();
            println!(
                "{:<22} {:>30} {:>30}",
                "  completeness err. %",
                q(&pct),
                format!("{} (reference)", q(&pct_ref))
            );
        }
    }
    Ok(())
}

/// One method as the audit computes it: through the shared LIME / Kernel SHAP evaluations when they
/// are on (both maps computed, the asked one kept).
fn explain_one(
    model: &Model,
    cfg: &ExplainConfig,
    m: Method,
    input: &attribution::ImageInput,
) -> anyhow::Result<attribution::Attribution> {
    let both = [Method::Lime, Method::KernelShap];
    if cfg.shared_evaluations && both.contains(&m) {
        let mut maps = attribution::explain_image(model, cfg, &both, input);
        let i = usize::from(m == Method::KernelShap);
        return Ok(maps.swap_remove(i).1?);
    }
    Ok(attribution::explain(model, cfg, m, input)?)
}

/// End to end: the whole audit (decode, brain mask, every method, metrics, SQLite writes) on the
/// benchmark images into a throw-away database, `repeats` times; median seconds per image.
fn bench_audit(
    ctx: &Plan,
    cfg: &ExplainConfig,
    samples: &[dataset::Sample],
    repeats: usize,
    peak: &Peak,
    flops: Option<f64>,
) -> anyhow::Result<()> {
    use crate::pipeline;
    use crate::store::{Store, Writer};
    let model = ctx.load_model()?;
    let dir = std::env::temp_dir().join(format!("tumor-audit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut per_image = Vec::new();
    for r in 0..repeats.max(1) {
        let db = dir.join(format!("bench-{r}.sqlite"));
        let _ = std::fs::remove_file(&db);
        let store = Store::open(&db)?;
        let run_id = format!("bench-{r}");
        store.begin_run(&ctx.run_record(
            &run_id,
            cfg,
            &ctx.settings.faithfulness,
            &model,
            None,
            std::path::Path::new(""),
            samples.len(),
        )?)?;
        let t0 = Instant::now();
        let writer = Writer::spawn(&db, 16, 64)?;
        let no_outlines = crate::outline::Outlines::none();
        let job = ctx.audit_job(&run_id, cfg, None, &no_outlines, Default::default());
        let stats = pipeline::run(&model, &job, samples.to_vec(), &writer.sender(), &|| {})?;
        writer.finish()?;
        store.finish_run(&run_id, "finished")?;
        let secs = t0.elapsed().as_secs_f64();
        per_image.push(secs / stats.images.max(1) as f64);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let med = median(&per_image).unwrap_or(0.0);
    let (lo, hi) = per_image
        .iter()
        .fold((f64::INFINITY, 0f64), |(a, b), &v| (a.min(v), b.max(v)));
    println!(
        "{}",
        bench_row("full audit (end to end)", med, Some((lo, hi)), flops, peak)
    );
    Ok(())
}
