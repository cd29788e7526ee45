//! The run's verdict (issue 15): shortcut discovery in the class mean maps, causal confirmation on the
//! model, trust-weighted calibrated flags, and one sentence a nightly gate and a person read.
//!
//! **Discovery.** A shortcut (a marker, burnt-in text, a frame line, a ruler) is evidence *in the same
//! place* in every image of a class, while anatomy and tumours move. Per class x method, each image's
//! |map| is scaled to sum 1 and averaged (the class's mean map M, as in the report's mean maps). The
//! baseline B is what the same maps would average to if each image's map were shifted by a random
//! offset of up to `shift` of the side in x and y (circularly, so no place of the image is favoured):
//! the mean of the shifted maps is M box-blurred with that window, computed exactly. Evidence that
//! moves from image to image is already spread in M, so M / B stays near 1 there; evidence in the same
//! place in many images stands out as a peak. Candidate regions are the connected cells where
//! M / B >= `min_lift` and M >= `min_density` x the uniform density, no larger than `max_area` of the
//! image, wherever they lie (inside or outside the brain mask). With a reference run (e.g. last
//! night's accepted run) the baseline is max(B, M_reference): a hot spot the accepted run already had
//! is not new. Regions of the same class found by several methods are merged.
//!
//! **Causal confirmation.** A map can point at a place the model does not use. Each candidate region R
//! of class C is tested on the model itself: *occlusion* fills R in the images predicted C with the
//! mean of a ring around R (per channel, per image: the region's surroundings, so a marker becomes
//! background and a patch over the head becomes head-grey) and counts the predictions that leave C;
//! *paste* copies R from C images into images predicted otherwise and counts those that become C. The
//! *control* repeats both tests with R moved to a random place of the image (seeded per region and
//! image), so a model that flips whenever anything is covered or pasted does not pass. Rates carry 95%
//! Wilson intervals. Verdict: **confirmed** when a rate reaches `min_flip_rate` and its interval lies
//! above the control's; **artefact** when both rates' upper bounds stay below `min_flip_rate` (the
//! model does not depend on the region: the map's hot spot is not a bias); **not significant**
//! otherwise.
//!
//! **Trust and calibrated flags.** A method whose deletion AUC is not below the random order's (from
//! the run's faithfulness curves, or else from deletion curves on a small sample computed here) or that
//! fails the model-randomisation sanity check is untrusted: it is shown, it raises no flags. A map
//! whose split-half reproducibility is below `min_reproducibility` raises no flag either. Thresholds
//! are per method: Tukey's far-out fence Q3 + `fence` x IQR of the method's background and border-band
//! mass over the run's images (or the reference run's), never closer than `min_margin` above Q3; an
//! image is flagged for review when a trusted, reproducible map lies above its method's fence.
use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::attribution::{rng_for_key, ExplainConfig};
use crate::error::{Error, Result};
use crate::model::Classifier;
use crate::preprocess::Prepared;
use crate::store::shortcuts::{
    FaithRow, RunImage, RunInputs, ShortcutCheck, ShortcutCheckRecord, ShortcutFlagRecord,
    ShortcutMethodRecord, ShortcutRegionRecord, ShortcutTestRecord,
};
use crate::trust::faithfulness;

pub mod acquisition;
mod causal;
mod discovery;

pub use causal::*;
pub use discovery::*;

/// The check's parameters (see the module documentation for what each one means).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShortcutConfig {
    /// Largest random shift of the baseline, as a fraction of the side.
    pub shift: f64,
    /// A cell is a candidate when the mean map is at least this many times the baseline...
    pub min_lift: f64,
    /// ...and at least this many times the uniform density 1 / cells.
    pub min_density: f64,
    /// Largest region, as a fraction of the image.
    pub max_area: f64,
    /// Regions kept per class x method (largest excess mass first).
    pub regions_per_map: usize,
    /// Regions tested per class after merging.
    pub regions_per_class: usize,
    /// Images per side of a causal test (first by image id).
    pub test_images: usize,
    /// Smallest flip rate that counts as a shortcut.
    pub min_flip_rate: f64,
    /// Tukey fence multiplier of the calibrated thresholds.
    pub fence: f64,
    /// A threshold is at least this far above the third quartile.
    pub min_margin: f64,
    /// Maps below this split-half reproducibility raise no flag.
    pub min_reproducibility: f64,
    /// Images of the deletion probe when the run has no faithfulness curves (0: no probe).
    pub probe_images: usize,
    /// Curve steps of the deletion probe.
    pub probe_steps: usize,
}

impl Default for ShortcutConfig {
    fn default() -> Self {
        ShortcutConfig {
            shift: 0.25,
            min_lift: 3.0,
            min_density: 2.0,
            max_area: 0.10,
            regions_per_map: 2,
            regions_per_class: 4,
            test_images: 32,
            min_flip_rate: 0.3,
            fence: 3.0,
            min_margin: 0.05,
            min_reproducibility: crate::attribution::reproducibility::MIN_REPRODUCIBILITY,
            probe_images: 16,
            probe_steps: 8,
        }
    }
}

/// A method's trust: (trusted, why not).
pub fn method_trust(faith: Option<&FaithRow>, sanity: Option<&str>) -> (bool, Option<String>) {
    if sanity == Some("fail") {
        return (
            false,
            Some("fails the model-randomisation sanity check".into()),
        );
    }
    if let Some(f) = faith {
        if f.deletion_auc >= f.random_deletion_auc {
            return (
                false,
                Some(format!(
                    "deletion AUC {:.3} is not below the random order's {:.3}",
                    f.deletion_auc, f.random_deletion_auc
                )),
            );
        }
        if f.share_below_random <= 0.5 {
            return (
                false,
                Some(format!(
                    "deletion AUC below the random order's on only {:.0}% of images",
                    100.0 * f.share_below_random
                )),
            );
        }
    }
    (true, None)
}

/// The fewest images on one side of a causal test for its verdict to be reachable: with `n` images
/// and no flip, the 95% Wilson upper bound z^2 / (n + z^2) must fall below `min_flip_rate` before
/// the region can be ruled out (and `n` all flipping against a silent control confirms it from
/// n > z^2 on, which is fewer). 9 at the default 30%.
pub fn images_needed(min_flip_rate: f64) -> usize {
    (1..10_000)
        .find(|&n| wilson(0, n).1 < min_flip_rate)
        .unwrap_or(10_000)
}

/// Where the calibrated thresholds come from: the run itself, or a reference run's inputs.
pub struct Reference<'a> {
    pub run_id: &'a str,
    pub inputs: &'a RunInputs,
}

/// The whole check of one run. `decode` gives an image's model input (None: the file cannot be read
/// any more; the image is left out of the tests). `classes` in the model's output order.
#[allow(clippy::too_many_arguments)]
pub fn check_run(
    model: &dyn Classifier,
    run_id: &str,
    inputs: &RunInputs,
    reference: Option<Reference>,
    classes: &[String],
    explain: &ExplainConfig,
    cfg: &ShortcutConfig,
    decode: &(dyn Fn(&RunImage) -> Option<Prepared> + Sync),
) -> Result<ShortcutCheck> {
    let t0 = std::time::Instant::now();
    let grid = inputs.grid;
    let class_index = |name: &str| classes.iter().position(|c| c == name);
    let mut forwards = 0usize;
    let methods: Vec<String> = if inputs.methods.is_empty() {
        let set: BTreeSet<&String> = inputs.maps.keys().map(|k| &k.1).collect();
        set.into_iter().cloned().collect()
    } else {
        inputs.methods.clone()
    };

    // Discovery: per explained class x method.
    let mut regions: Vec<Region> = Vec::new();
    if grid > 0 {
        let radius = ((cfg.shift * grid as f64).round() as usize).max(1);
        for class in classes {
            let ids: Vec<&str> = inputs
                .images
                .iter()
                .filter(|i| &i.target == class)
                .map(|i| i.image_id.as_str())
                .collect();
            let mut found = Vec::new();
            for method in &methods {
                let maps: Vec<&[f32]> = ids
                    .iter()
                    .filter_map(|id| inputs.maps.get(&(id.to_string(), method.clone())))
                    .map(Vec::as_slice)
                    .collect();
                let Some(mean) = mean_abs_map(&maps) else {
                    continue;
                };
                let mut baseline = shift_baseline(&mean, grid, radius);
                if let Some(r) = &reference {
                    if r.inputs.grid == grid {
                        let ref_maps: Vec<&[f32]> = r
                            .inputs
                            .images
                            .iter()
                            .filter(|i| &i.target == class)
                            .filter_map(|i| {
                                r.inputs.maps.get(&(i.image_id.clone(), method.clone()))
                            })
                            .map(Vec::as_slice)
                            .collect();
                        if let Some(rm) = mean_abs_map(&ref_maps) {
                            baseline
                                .iter_mut()
                                .zip(&rm)
                                .for_each(|(b, &v)| *b = b.max(v));
                        }
                    }
                }
                for c in find_candidates(&mean, &baseline, grid, cfg) {
                    found.push((method.clone(), c));
                }
            }
            let max_cells = (cfg.max_area * (grid * grid) as f64) as usize;
            regions.extend(merge_regions(
                class,
                found,
                cfg.regions_per_class,
                max_cells,
            ));
        }
    }

    // The images the tests need, decoded once: per predicted class, the first `test_images` by id.
    let mut chosen: Vec<&RunImage> = Vec::new();
    for class in classes {
        chosen.extend(
            inputs
                .images
                .iter()
                .filter(|i| &i.predicted == class)
                .take(cfg.test_images),
        );
    }
    let decoded: Vec<(&RunImage, Prepared)> = chosen
        .par_iter()
        .filter_map(|i| decode(i).map(|p| (*i, p)))
        .collect();
    let (channels, size) = match decoded.first() {
        Some((_, p)) => (p.channels, p.size),
        None => (0, 0),
    };
    let probs = if decoded.is_empty() {
        Vec::new()
    } else {
        let inputs: Vec<Vec<f32>> = decoded.iter().map(|(_, p)| p.input.clone()).collect();
        forwards += inputs.len();
        predict(model, &inputs, channels, size)?
    };
    let tested: Vec<(&RunImage, TestImage)> = decoded
        .iter()
        .zip(probs)
        .map(|((i, p), probs)| {
            (
                *i,
                TestImage {
                    id: &i.image_id,
                    input: &p.input,
                    probs,
                },
            )
        })
        .collect();

    // Causal tests.
    let mut region_rows = Vec::new();
    let mut test_rows = Vec::new();
    for (k, region) in regions.iter().enumerate() {
        let Some(ci) = class_index(&region.class) else {
            continue;
        };
        // The prediction now (the images' stored prediction could come from another device's rounding).
        let (own, others): (Vec<TestImage>, Vec<TestImage>) = tested
            .iter()
            .map(|(_, t)| t.clone())
            .partition(|t| argmax(&t.probs) == ci);
        let (causal, n, outcomes) = if size > 0 {
            causal_test(
                model,
                ci,
                &own,
                &others,
                &region.candidate.mask,
                grid,
                channels,
                size,
                // The control's places are drawn per region (its class and box), not per position
                // in the list, so a check run again draws the same controls.
                &{
                    let (x0, y0, x1, y1) = bbox(&region.candidate.mask, grid);
                    format!("{run_id}/{}/{x0:.4},{y0:.4},{x1:.4},{y1:.4}", region.class)
                },
                explain.seed,
                cfg.min_flip_rate,
            )?
        } else {
            (Causal::default(), 0, Vec::new())
        };
        test_rows.extend(outcomes.into_iter().map(|o| {
            ShortcutTestRecord {
                region: k as i64 + 1,
                image_id: o.image_id,
                test: o.test.to_string(),
                donor: o.donor,
                class_before: o.before,
                class_after: o.after,
                predicted_after: (classes.get(o.predicted_after).cloned())
                    .unwrap_or_else(|| o.predicted_after.to_string()),
                flipped: o.flipped,
            }
        }));
        forwards += n;
        let (x0, y0, x1, y1) = bbox(&region.candidate.mask, grid);
        region_rows.push(ShortcutRegionRecord {
            region: k as i64 + 1,
            class: region.class.clone(),
            methods: region.methods.clone(),
            x0,
            y0,
            x1,
            y1,
            area: region.candidate.cells() as f64 / (grid * grid) as f64,
            grid: grid as i64,
            mask: region.candidate.mask.iter().map(|&b| b as u8).collect(),
            mass_share: region.candidate.mass_share,
            lift: region.candidate.lift,
            occlusion: causal.occlusion.record(),
            paste: causal.paste.record(),
            control_occlusion: causal.control_occlusion.record(),
            control_paste: causal.control_paste.record(),
            verdict: causal.verdict(cfg.min_flip_rate).to_string(),
        });
    }

    // Trust: the run's own faithfulness curves, or a deletion probe on a sample of the tested images.
    let mut faith: BTreeMap<String, (FaithRow, &'static str)> = inputs
        .faithfulness
        .iter()
        .filter(|f| f.images >= 4)
        .map(|f| (f.method.clone(), (f.clone(), "faithfulness")))
        .collect();
    if faith.is_empty() && cfg.probe_images > 0 && size > 0 && grid > 0 {
        let (rows, n) = deletion_probe(
            model, explain, cfg, inputs, &tested, classes, channels, size,
        )?;
        forwards += n;
        for r in rows {
            faith.insert(r.method.clone(), (r, "probe"));
        }
    }

    // Calibrated thresholds and flags.
    let calibration = reference.as_ref().map(|r| r.inputs).unwrap_or(inputs);
    let threshold_source = reference
        .as_ref()
        .map(|r| format!("reference:{}", r.run_id))
        .unwrap_or_else(|| "run".into());
    let mut method_rows = Vec::new();
    let mut flags = Vec::new();
    for method in &methods {
        let f = faith.get(method);
        let sanity = inputs.sanity.get(method).map(String::as_str);
        let (trusted, reason) = method_trust(f.map(|x| &x.0), sanity);
        let values = |pick: fn(&crate::store::shortcuts::MetricRow) -> Option<f64>| -> Vec<f64> {
            calibration
                .metrics
                .iter()
                .filter(|m| &m.method == method)
                .filter_map(pick)
                .collect()
        };
        let t_bg = fence(&values(|m| m.mass_background), cfg.fence, cfg.min_margin);
        let t_border = fence(&values(|m| m.mass_border), cfg.fence, cfg.min_margin);
        let repro: Vec<f64> = inputs
            .metrics
            .iter()
            .filter(|m| &m.method == method)
            .filter_map(|m| m.reproducibility)
            .collect();
        let median_repro = crate::metrics::median(&repro);
        let mut flagged = BTreeSet::new();
        if trusted {
            for m in inputs.metrics.iter().filter(|m| &m.method == method) {
                // A stochastic map below the level (NaN included) raises no flag.
                if m.reproducibility
                    .is_some_and(|r| r.is_nan() || r < cfg.min_reproducibility)
                {
                    continue;
                }
                for (reason, value, threshold) in [
                    ("background", m.mass_background, t_bg),
                    ("border", m.mass_border, t_border),
                ] {
                    if let (Some(v), Some(t)) = (value, threshold) {
                        if v > t {
                            flagged.insert(m.image_id.clone());
                            flags.push(ShortcutFlagRecord {
                                image_id: m.image_id.clone(),
                                method: method.clone(),
                                reason: reason.into(),
                                value: v,
                                threshold: t,
                            });
                        }
                    }
                }
            }
        }
        method_rows.push(ShortcutMethodRecord {
            method: method.clone(),
            trusted,
            reason,
            trust_source: f.map(|x| x.1.to_string()),
            trust_images: f.map(|x| x.0.images),
            deletion_auc: f.map(|x| x.0.deletion_auc),
            random_deletion_auc: f.map(|x| x.0.random_deletion_auc),
            sanity_verdict: sanity.map(str::to_string),
            median_reproducibility: median_repro,
            threshold_background: t_bg,
            threshold_border: t_border,
            threshold_source: threshold_source.clone(),
            flagged_images: flagged.len() as i64,
        });
    }
    let flagged_images: BTreeSet<&str> = flags.iter().map(|f| f.image_id.as_str()).collect();
    let images = inputs.images.len();
    let untrusted: Vec<&str> = method_rows
        .iter()
        .filter(|m| !m.trusted)
        .map(|m| m.method.as_str())
        .collect();
    let strongest = region_rows
        .iter()
        .filter(|r| r.verdict == "confirmed")
        .max_by(|a, b| {
            let key = |r: &ShortcutRegionRecord| {
                r.occlusion
                    .rate
                    .unwrap_or(0.0)
                    .max(r.paste.rate.unwrap_or(0.0))
            };
            key(a).total_cmp(&key(b))
        });
    let review = format!(
        "{} of {images} image(s) flagged for review by trusted methods{}",
        flagged_images.len(),
        if untrusted.is_empty() {
            String::new()
        } else {
            format!(" (untrusted, not flagging: {})", untrusted.join(", "))
        }
    );
    let needed = images_needed(cfg.min_flip_rate);
    // Candidate regions whose tests could not decide either way for lack of images: fewer than
    // `needed` on each side, so neither 'confirmed' nor 'artefact' was reachable.
    let starved: Vec<&ShortcutRegionRecord> = region_rows
        .iter()
        .filter(|r| r.verdict == "not_significant")
        .filter(|r| (r.occlusion.images.max(r.paste.images) as usize) < needed)
        .collect();
    let no_trusted = !method_rows.is_empty() && untrusted.len() == method_rows.len();
    let (verdict, summary) = match strongest {
        Some(r) => (
            "shortcut",
            format!(
                "shortcut confirmed at region {} (x {:.2}-{:.2}, y {:.2}-{:.2} of the image) for class {}: \
                 occluding it flips {:.0}% of {} {} predictions, pasting it into other images flips {:.0}% of {}; {}",
                r.region,
                r.x0,
                r.x1,
                r.y0,
                r.y1,
                r.class,
                100.0 * r.occlusion.rate.unwrap_or(0.0),
                r.occlusion.images,
                r.class,
                100.0 * r.paste.rate.unwrap_or(0.0),
                r.paste.images,
                review
            ),
        ),
        None if no_trusted => (
            "inconclusive",
            format!(
                "inconclusive: no method's maps can be trusted ({}), so no image can be flagged and a clean \
                 result means nothing; to make it conclusive, check that données.image matches the model's \
                 own preprocessing (resize filter, preset, mean / std) and that the methods' baselines \
                 delete information (a deletion curve must fall faster than the random order's), then audit \
                 again; {} candidate region(s) tested on the model, none confirmed",
                method_rows
                    .iter()
                    .map(|m| format!(
                        "{}: {}",
                        m.method,
                        m.reason.as_deref().unwrap_or("untrusted")
                    ))
                    .collect::<Vec<_>>()
                    .join("; "),
                region_rows.len()
            ),
        ),
        None if !starved.is_empty() => (
            "inconclusive",
            format!(
                "inconclusive: {} candidate region(s) could not reach significance for lack of images ({}); \
                 a region's test needs at least {needed} image(s) on a side (predicted its class to occlude, \
                 or predicted otherwise to paste into) before a flip rate of {:.0}% can be confirmed or ruled \
                 out: audit at least {needed} image(s) per class; {review}",
                starved.len(),
                starved
                    .iter()
                    .map(|r| format!(
                        "region {} of class {}: {} to occlude, {} to paste into",
                        r.region, r.class, r.occlusion.images, r.paste.images
                    ))
                    .collect::<Vec<_>>()
                    .join("; "),
                100.0 * cfg.min_flip_rate
            ),
        ),
        None => (
            "no_shortcut",
            format!(
                "no shortcut found ({} candidate region(s) tested: {} artefact(s) of the maps, {} not significant); {review}",
                region_rows.len(),
                region_rows.iter().filter(|r| r.verdict == "artefact").count(),
                region_rows.iter().filter(|r| r.verdict == "not_significant").count(),
            ),
        ),
    };
    Ok(ShortcutCheck {
        check: ShortcutCheckRecord {
            run_id: run_id.to_string(),
            reference_run: reference.as_ref().map(|r| r.run_id.to_string()),
            images: images as i64,
            verdict: verdict.into(),
            summary,
            flagged_images: flagged_images.len() as i64,
            min_reproducibility: cfg.min_reproducibility,
            params: serde_json::to_string(cfg).map_err(|e| Error::Other(e.to_string()))?,
            forward_passes: forwards as i64,
            seconds: t0.elapsed().as_secs_f64(),
        },
        methods: method_rows,
        regions: region_rows,
        tests: test_rows,
        flags,
        acquisition: None,
    })
}

/// Deletion curves (K = `probe_steps`, probability of the explained class) of the stored maps,
/// upsampled to the model's side, and of the random pixel order (the same seeded order the
/// faithfulness curves use), on `probe_images` tested images (classes in turn, by image id): per method
/// the mean deletion AUC, the random order's, and the share of images where the method's is lower.
/// Deletion only, and the curves' two ends (the image itself, the all-reference image) are shared by
/// every order: (orders x (K - 1) + 1) forward passes per image. Returns the rows and the passes.
#[allow(clippy::too_many_arguments)]
fn deletion_probe(
    model: &dyn Classifier,
    explain: &ExplainConfig,
    cfg: &ShortcutConfig,
    inputs: &RunInputs,
    tested: &[(&RunImage, TestImage)],
    classes: &[String],
    channels: usize,
    size: usize,
) -> Result<(Vec<FaithRow>, usize)> {
    let grid = inputs.grid;
    let steps = cfg.probe_steps.max(2);
    let n = size * size;
    let counts = faithfulness::step_counts(n, steps);
    let fractions: Vec<f64> = counts.iter().map(|&c| c as f64 / n as f64).collect();
    let reference = explain.reference_values(channels);
    // Classes in turn, so a probe of 16 images covers both classes of a binary model.
    let mut by_class: Vec<Vec<&(&RunImage, TestImage)>> = vec![Vec::new(); classes.len()];
    for t in tested {
        if let Some(c) = classes.iter().position(|c| c == &t.0.target) {
            by_class[c].push(t);
        }
    }
    let mut sample = Vec::new();
    let mut i = 0;
    while sample.len() < cfg.probe_images && by_class.iter().any(|c| i < c.len()) {
        for c in &by_class {
            if let Some(t) = c.get(i) {
                if sample.len() < cfg.probe_images {
                    sample.push(*t);
                }
            }
        }
        i += 1;
    }
    let mut per: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut forwards = 0;
    for (img, t) in sample {
        let target = classes.iter().position(|c| c == &img.target).unwrap_or(0);
        let random = faithfulness::random_order(
            n,
            &mut rng_for_key(&img.image_id, faithfulness::RANDOM, explain.seed),
        );
        let mut orders: Vec<(String, Vec<usize>)> = inputs
            .methods
            .iter()
            .filter_map(|m| {
                let map = inputs.maps.get(&(img.image_id.clone(), m.clone()))?;
                let up = crate::metrics::downsample(map, grid, grid, size, size);
                Some((m.clone(), faithfulness::importance_order(&up, &random)))
            })
            .collect();
        if orders.is_empty() {
            continue;
        }
        orders.push((faithfulness::RANDOM.to_string(), random));
        let mut batch = Vec::new();
        for (_, order) in &orders {
            let mut img_k = t.input.to_vec();
            let mut done = 0;
            for &c in &counts[1..steps] {
                for &p in &order[done..c] {
                    for ch in 0..channels {
                        img_k[ch * n + p] = reference.value(ch);
                    }
                }
                done = c;
                batch.push(img_k.clone());
            }
        }
        batch.push(reference.image(channels, n));
        let probs = predict(model, &batch, channels, size)?;
        forwards += batch.len();
        let last = probs[probs.len() - 1][target] as f64;
        let aucs: Vec<(String, f64)> = orders
            .iter()
            .enumerate()
            .map(|(o, (name, _))| {
                let mut curve = vec![t.probs[target] as f64];
                curve.extend(
                    probs[o * (steps - 1)..(o + 1) * (steps - 1)]
                        .iter()
                        .map(|p| p[target] as f64),
                );
                curve.push(last);
                (
                    name.clone(),
                    faithfulness::trapezoid_auc(&fractions, &curve),
                )
            })
            .collect();
        let r = aucs.last().expect("the random order is last").1;
        for (name, auc) in &aucs[..aucs.len() - 1] {
            per.entry(name.clone()).or_default().push((*auc, r));
        }
    }
    let rows = per
        .into_iter()
        .map(|(method, v)| {
            let n = v.len() as f64;
            FaithRow {
                method,
                images: v.len() as i64,
                deletion_auc: v.iter().map(|x| x.0).sum::<f64>() / n,
                random_deletion_auc: v.iter().map(|x| x.1).sum::<f64>() / n,
                share_below_random: v.iter().filter(|x| x.0 < x.1).count() as f64 / n,
            }
        })
        .collect();
    Ok((rows, forwards))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_known_values() {
        // 0 of 10: upper bound z^2 / (n + z^2) = 3.8415 / 13.8415 = 0.2775.
        let (lo, hi) = wilson(0, 10);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.2775).abs() < 1e-3, "{hi}");
        // 5 of 10: symmetric around 1/2, 0.2366..0.7634.
        let (lo, hi) = wilson(5, 10);
        assert!((lo - 0.2366).abs() < 1e-3 && (hi - 0.7634).abs() < 1e-3);
    }

    #[test]
    fn the_shift_baseline_keeps_mass_and_spreads_a_peak() {
        let g = 16;
        let mut m = vec![0f32; g * g];
        m[0] = 1.0; // a corner peak: the circular window treats it like any other place
        let b = shift_baseline(&m, g, 2);
        let total: f32 = b.iter().sum();
        assert!((total - 1.0).abs() < 1e-5);
        // A 5 x 5 window: the peak's value is spread evenly, 1/25 at every cell within 2 (wrapping).
        assert!((b[0] - 0.04).abs() < 1e-6 && (b[(g - 1) * g + g - 1] - 0.04).abs() < 1e-6);
        assert_eq!(b[3 * g + 3], 0.0);
    }

    #[test]
    fn a_consistent_spot_is_found_wherever_it_is_and_a_flat_map_gives_nothing() {
        let g = 32;
        let cfg = ShortcutConfig::default();
        for (cx, cy) in [(2, 2), (16, 16), (29, 5), (3, 27)] {
            let mut m = vec![1f32; g * g];
            for y in cy - 1..=cy + 1 {
                for x in cx - 1..=cx + 1 {
                    m[y * g + x] = 40.0;
                }
            }
            let b = shift_baseline(&m, g, 8);
            let c = find_candidates(&m, &b, g, &cfg);
            assert_eq!(c.len(), 1, "spot at ({cx}, {cy})");
            let (x0, y0, x1, y1) = bbox(&c[0].mask, g);
            let centre = ((x0 + x1) / 2.0 * g as f64, (y0 + y1) / 2.0 * g as f64);
            assert!(
                (centre.0 - cx as f64 - 0.5).abs() < 1.01
                    && (centre.1 - cy as f64 - 0.5).abs() < 1.01,
                "{centre:?} vs ({cx}, {cy})"
            );
        }
        let flat = vec![1f32; g * g];
        assert!(find_candidates(&flat, &shift_baseline(&flat, g, 8), g, &cfg).is_empty());
    }

    #[test]
    fn the_causal_verdict_rule() {
        let c = |images, flips| Counts {
            images,
            flips,
            mean_shift: 0.0,
        };
        let none = Counts::default();
        // The region's occlusion and paste counts, then the random-place controls'.
        let causal = |occlusion, paste, control_occlusion, control_paste| Causal {
            occlusion,
            paste,
            control_occlusion,
            control_paste,
        };
        // 20 of 24 flip against 1 of 24 in the control: confirmed.
        let strong = causal(c(24, 20), none, c(24, 1), none);
        assert_eq!(strong.verdict(0.2), "confirmed");
        // No flip in 30 either way: the model does not use it.
        let flat = causal(c(30, 0), c(30, 0), c(30, 0), c(30, 0));
        assert_eq!(flat.verdict(0.2), "artefact");
        // As many flips as the control: not significant.
        let fragile = causal(c(30, 10), c(30, 0), c(30, 9), c(30, 0));
        assert_eq!(fragile.verdict(0.2), "not_significant");
    }

    #[test]
    fn images_needed_for_a_decidable_region() {
        // 0 of 8: upper bound 3.8415 / 11.8415 = 0.324 >= 0.3; 0 of 9: 3.8415 / 12.8415 = 0.299.
        assert_eq!(images_needed(0.3), 9);
        // 0.2: n > 3.8415 * 4 = 15.4 -> 16.
        assert_eq!(images_needed(0.2), 16);
    }

    #[test]
    fn fences_are_far_out_and_never_at_the_quartile() {
        // 1..=9: Q1 = 3, Q3 = 7, IQR 4 -> 7 + 3 * 4 = 19.
        let v: Vec<f64> = (1..=9).map(f64::from).collect();
        assert_eq!(fence(&v, 3.0, 0.05), Some(19.0));
        // A constant distribution: Q3 + margin.
        assert_eq!(fence(&[0.4; 8], 3.0, 0.05), Some(0.45));
        assert_eq!(fence(&[], 3.0, 0.05), None);
        assert_eq!(
            causal::quartiles(&[5.0, 1.0, f64::NAN, 3.0, 2.0, 4.0]),
            Some((2.0, 3.0, 4.0))
        );
    }

    #[test]
    fn untrusted_when_not_better_than_random_or_failing_the_sanity_check() {
        let row = |del, rnd, share| FaithRow {
            method: "gradcam".into(),
            images: 16,
            deletion_auc: del,
            random_deletion_auc: rnd,
            share_below_random: share,
        };
        assert!(!method_trust(Some(&row(0.5, 0.5, 0.4)), None).0);
        assert!(!method_trust(Some(&row(0.3, 0.5, 0.5)), None).0);
        assert!(method_trust(Some(&row(0.3, 0.5, 0.9)), None).0);
        assert!(!method_trust(Some(&row(0.3, 0.5, 0.9)), Some("fail")).0);
        assert!(method_trust(None, None).0);
    }
}
