//! Acquisition shortcuts: a model that learned the scanner, the site or the protocol (noise, grey
//! levels, sharpness, resolution, compression, framing) instead of the tumour. They have no place in
//! the image, so the place-based check cannot see them; this part of the shortcut check measures and
//! tests them on the same run.
//!
//! **What differs between the classes.** Every audited image (up to `measure_images` per class, by
//! image id; classes by label, or by prediction when the run has no labels) is measured: its source
//! file's width, height, aspect, colour mode (grey file, colour content), JPEG (and the IJG quality
//! its luminance quantisation table implies), and, at the model's side (the image as the model's
//! resize gives it, before scaling), the noise (Immerkaer's estimator off edges), mean grey level,
//! contrast, sharpness (steepest edges of the median-filtered image over its grey range) and share of
//! background. Per pair of classes and property: both classes' medians and quartiles and the rank
//! separation P(a > b) (0.5: no difference; near 0 or 1: the property alone tells the classes apart,
//! a confound of the data whatever the model does).
//!
//! **Counterfactuals.** Per ordered pair (A, B) and per kind, one transformation moves images of A
//! toward B's acquisition, with its strength taken from the measured difference: *noise* (B noisier:
//! Gaussian noise of sqrt(sigma_B^2 - sigma_A^2); B cleaner: an edge-preserving denoising, passes
//! until A's median noise reaches B's), *intensity* (A's grey levels matched to B's pooled
//! histogram), *sharpness* (B blurrier: the Gaussian blur, B sharper: the unsharp mask, whose strength
//! brings A's median sharpness nearest B's), *resolution* (A's sources larger: down-sampled by the
//! ratio of the median source sides and up-sampled back), *JPEG* (B mostly JPEG: A re-compressed at
//! B's median quality), *aspect* (A's width stretched to B's median aspect), *framing* (padded or
//! cropped to B's median background share) and a *left-right flip*. A kind whose property does not
//! differ is not tested (and says why). The tested images are the first `test_images` images (by
//! id) of each class that the model predicts as that class now. A flip is an A image now predicted B.
//!
//! **Control and confirmation.** The control is the same transformation, same strength, on the B
//! images: it does not move them toward A (it moves them further from A, or leaves them at B's own
//! statistics: B's noise added again, B matched to B's own histogram, B re-compressed at B's quality),
//! so it measures how much the operation disturbs the model by itself; a control flip is a B image
//! no longer predicted B. For the geometric kinds (aspect, framing) the control is the opposite change
//! of the same strength on the A images (crop for pad, squeeze for stretch), a control flip an A image
//! then predicted B: a rescale costs a small image detail in both directions (a tumour shrunk by padding
//! is harder to see), and only the direction of the change moves toward B. Rates carry 95% Wilson intervals: **confirmed** when the flip rate's
//! interval lies above `min_flip_rate` and above the control's interval (stricter than the place-based
//! test, which asks the rate itself to reach the minimum: a whole-image change moves a model a little
//! for reasons of its own); **no effect** when its upper bound stays below `min_flip_rate`; **not
//! significant** otherwise; **accepted** when confirmed and the `--reference` run had the same finding confirmed
//! (or accepted): it is shown, it does not make the verdict. A confirmed finding is a `shortcut` of
//! the run's verdict, named by its kind, beside the place-based regions.
//!
//! **Cost.** One forward pass per tested image, then one per transformed image, and the control's
//! only where the flip rate reaches `min_flip_rate` (no other row can confirm): per ordered pair of
//! classes at most `test_images` x (kinds tested) plus as many for the controls that run; for a binary
//! model at most 64 + 16 x 32 + 16 x 32 forward passes, 64 + 16 x 32 when no rate reaches the minimum.
use std::collections::BTreeSet;
use std::path::Path;

use image::DynamicImage;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::Serialize;

use super::causal::{argmax, predict, quartiles, Counts};
use crate::attribution::rng_for_key;
use crate::dataset::Limits;
use crate::error::Result;
use crate::model::Classifier;
use crate::preprocess::{prepare, resize_for_model, ImageConfig};
use crate::store::shortcuts::{
    AcquisitionPropertyRecord, AcquisitionRecords, AcquisitionTestRecord, Distribution, RunImage,
    RunInputs, ShortcutCheck,
};

pub mod measure;
pub mod transform;

use measure::{separation, ImageAcquisition, PROPERTIES};
use transform::{cdf, Transform};

/// The acquisition check's parameters.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AcquisitionConfig {
    /// Images measured per class (first by id).
    pub measure_images: usize,
    /// Images per class the counterfactuals transform (first by id among those predicted as the class).
    pub test_images: usize,
    /// Smallest flip rate that counts as a shortcut (the place-based test's).
    pub min_flip_rate: f64,
}

impl Default for AcquisitionConfig {
    fn default() -> Self {
        AcquisitionConfig {
            measure_images: 200,
            test_images: 32,
            min_flip_rate: 0.3,
        }
    }
}

/// The kinds of acquisition shortcut, in the order of the flip table: (kind, in words).
pub const KINDS: [(&str, &str); 8] = [
    ("noise", "noise level"),
    ("intensity", "intensity"),
    ("sharpness", "sharpness"),
    ("resolution", "resolution"),
    ("jpeg", "JPEG compression"),
    ("aspect", "aspect ratio"),
    ("framing", "framing"),
    ("flip", "left-right flip"),
];

/// The kind's words ("noise level").
pub fn kind_label(kind: &str) -> &str {
    KINDS
        .iter()
        .find(|k| k.0 == kind)
        .map(|k| k.1)
        .unwrap_or(kind)
}

/// One measured image; `source` kept for the tested ones only.
struct Measured<'a> {
    image: &'a RunImage,
    acq: ImageAcquisition,
    histogram: [f64; 256],
    source: Option<DynamicImage>,
}

/// One class's part: its measured images, its pooled grey-level distribution, its tested images.
struct ClassData<'a> {
    index: usize,
    name: &'a str,
    measured: Vec<Measured<'a>>,
    cdf: Vec<f64>,
    tested: Vec<Tested<'a>>,
}

/// A tested image: its source file decoded, the same at the model's side, the probabilities now.
struct Tested<'a> {
    image: &'a RunImage,
    source: DynamicImage,
    model_side: DynamicImage,
    probs: Vec<f32>,
}

impl Tested<'_> {
    fn apply(&self, t: &Transform, cfg: &ImageConfig, rng: &mut impl rand::Rng) -> DynamicImage {
        t.apply(&self.source, &self.model_side, cfg, rng)
    }
}

impl ClassData<'_> {
    fn values(&self, property: &str) -> Vec<f64> {
        self.measured
            .iter()
            .filter_map(|m| m.acq.value(property))
            .filter(|v| v.is_finite())
            .collect()
    }

    fn median(&self, property: &str) -> Option<f64> {
        quartiles(&self.values(property)).map(|q| q.1)
    }

    fn side(&self) -> Option<f64> {
        let sides: Vec<f64> = self
            .measured
            .iter()
            .map(|m| (m.acq.source_width * m.acq.source_height).sqrt())
            .collect();
        quartiles(&sides).map(|q| q.1)
    }
}

/// Reads, checks (the id is the file's content) and measures one image; the decoded source is kept
/// when `keep`.
fn read_one<'a>(
    image: &'a RunImage,
    cfg: &ImageConfig,
    limits: Limits,
    keep: bool,
) -> Option<Measured<'a>> {
    let path = Path::new(&image.path);
    let size = std::fs::metadata(path).ok()?.len();
    if size == 0 || size > limits.max_file_bytes {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    if crate::dataset::content_id(&bytes) != image.image_id {
        return None;
    }
    let source = crate::dataset::decode(&bytes, limits).ok()?;
    let model_side = resize_for_model(&source, cfg);
    let acq = measure::measure(&bytes, &source, &model_side);
    let mut histogram = [0f64; 256];
    for p in model_side.to_luma8().pixels() {
        histogram[p.0[0] as usize] += 1.0;
    }
    Some(Measured {
        image,
        acq,
        histogram,
        source: keep.then_some(source),
    })
}

/// The model input of a model-side image (already at the model's side: no resize).
fn input_of(img: &DynamicImage, cfg: &ImageConfig) -> Vec<f32> {
    prepare(img, cfg).input
}

fn png(img: &DynamicImage) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    DynamicImage::ImageLuma8(img.to_luma8())
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .ok()?;
    Some(out)
}

/// The transformation of kind `kind` that moves `a`'s images toward `b`'s acquisition, or why there is
/// none.
fn plan(
    kind: &str,
    a: &ClassData,
    b: &ClassData,
    cfg: &ImageConfig,
) -> std::result::Result<Transform, String> {
    let (an, bn) = (a.name, b.name);
    let med = |c: &ClassData, p: &str| {
        c.median(p)
            .ok_or_else(|| format!("no `{}` image has a {p} value", c.name))
    };
    // The strength among `candidates` whose transformed tested images' median `property` comes nearest
    // to `target`.
    let fit = |candidates: &[f64],
               make: &dyn Fn(f64) -> Transform,
               property: fn(&measure::Grey) -> f64,
               target: f64|
     -> f64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut best = (f64::INFINITY, candidates[0]);
        for &c in candidates {
            let t = make(c);
            let v: Vec<f64> = a
                .tested
                .iter()
                .map(|x| property(&measure::Grey::of(&x.apply(&t, cfg, &mut rng))))
                .collect();
            let m = quartiles(&v).map(|q| q.1).unwrap_or(f64::NAN);
            if (m - target).abs() < best.0 {
                best = ((m - target).abs(), c);
            }
        }
        best.1
    };
    match kind {
        "noise" => {
            let (sa, sb) = (med(a, "noise")?, med(b, "noise")?);
            if sb > 1.1 * sa + 0.5 {
                Ok(Transform::AddNoise {
                    sigma: (sb * sb - sa * sa).sqrt(),
                })
            } else if sb < sa / 1.1 - 0.5 {
                // The fewest passes that bring A's median noise to B's (3 at most), one pass at a
                // time on the tested images.
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
                let one = Transform::Denoise { passes: 1 };
                let mut current: Vec<DynamicImage> =
                    a.tested.iter().map(|x| x.model_side.clone()).collect();
                let mut passes = 3;
                for k in 1..=3 {
                    current = current
                        .iter()
                        .map(|img| one.apply(img, img, cfg, &mut rng))
                        .collect();
                    let v: Vec<f64> = current
                        .iter()
                        .map(|img| measure::noise_sigma(&measure::Grey::of(img)))
                        .collect();
                    if quartiles(&v).is_some_and(|q| q.1 <= sb) {
                        passes = k;
                        break;
                    }
                }
                Ok(Transform::Denoise { passes })
            } else {
                Err(format!(
                    "noise levels match: median {sa:.1} (`{an}`) and {sb:.1} (`{bn}`) grey levels"
                ))
            }
        }
        "intensity" => {
            let w1: f64 = a.cdf.iter().zip(&b.cdf).map(|(x, y)| (x - y).abs()).sum();
            if w1 < 2.0 {
                Err(format!(
                    "grey-level distributions match: they differ by {w1:.1} grey levels (Wasserstein)"
                ))
            } else {
                Ok(Transform::MatchHistogram {
                    target_cdf: b.cdf.clone(),
                })
            }
        }
        "sharpness" => {
            let (sa, sb) = (med(a, "sharpness")?, med(b, "sharpness")?);
            if sb < sa / 1.1 {
                let sigma = fit(
                    &[0.4, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0, 2.5, 3.0],
                    &|s| Transform::Blur { sigma: s },
                    measure::sharpness,
                    sb,
                );
                Ok(Transform::Blur { sigma })
            } else if sb > 1.1 * sa {
                let amount = fit(
                    &[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0],
                    &|x| Transform::Sharpen { amount: x },
                    measure::sharpness,
                    sb,
                );
                Ok(Transform::Sharpen { amount })
            } else {
                Err(format!(
                    "sharpness matches: median {sa:.1} (`{an}`) and {sb:.1} (`{bn}`) % of range per px"
                ))
            }
        }
        "resolution" => {
            let (ra, rb) = (
                a.side().ok_or("no source size")?,
                b.side().ok_or("no source size")?,
            );
            let r = ra / rb;
            if r > 1.1 {
                Ok(Transform::Resample { ratio: r })
            } else if r < 1.0 / 1.1 {
                Err(format!(
                    "`{an}` sources are smaller than `{bn}`'s (median side {ra:.0} against {rb:.0} px): lost detail cannot be added"
                ))
            } else {
                Err(format!(
                    "source sizes match: median side {ra:.0} (`{an}`) and {rb:.0} (`{bn}`) px"
                ))
            }
        }
        "jpeg" => {
            let share_b = b.values("jpeg").iter().sum::<f64>() / b.measured.len().max(1) as f64;
            let share_a = a.values("jpeg").iter().sum::<f64>() / a.measured.len().max(1) as f64;
            if share_b < 0.5 {
                return Err(format!(
                    "`{bn}` images are mostly not JPEG ({:.0}%)",
                    100.0 * share_b
                ));
            }
            let qb = med(b, "jpeg_quality")?;
            let qa = a.median("jpeg_quality");
            if share_a >= 0.5 && qa.is_some_and(|q| (q - qb).abs() < 5.0) {
                return Err(format!(
                    "JPEG qualities match: median {:.0} (`{an}`) and {qb:.0} (`{bn}`)",
                    qa.unwrap_or(0.0)
                ));
            }
            Ok(Transform::Jpeg {
                quality: qb.round().clamp(1.0, 100.0) as u8,
            })
        }
        "aspect" => {
            let (xa, xb) = (med(a, "aspect")?, med(b, "aspect")?);
            let f = xb / xa;
            if f.ln().abs() < 0.05 {
                Err(format!(
                    "aspect ratios match: median {xa:.2} (`{an}`) and {xb:.2} (`{bn}`)"
                ))
            } else {
                Ok(Transform::Stretch { factor: f })
            }
        }
        "framing" => {
            let (ga, gb) = (med(a, "background")?, med(b, "background")?);
            let s = ((1.0 - ga).max(0.01) / (1.0 - gb).max(0.01))
                .sqrt()
                .clamp(0.6, 1.6);
            if (s - 1.0).abs() < 0.03 {
                Err(format!(
                    "background shares match: median {:.0}% (`{an}`) and {:.0}% (`{bn}`)",
                    100.0 * ga,
                    100.0 * gb
                ))
            } else {
                Ok(Transform::Frame { scale: s })
            }
        }
        "flip" => Ok(Transform::Flip),
        other => Err(format!("unknown kind {other}")),
    }
}

/// The counterfactual in words: "adding the `yes` images' noise (...) to `no` images".
fn what(t: &Transform, a: &str, b: &str) -> String {
    match t {
        Transform::AddNoise { sigma } => format!(
            "adding the `{b}` images' noise (Gaussian, sigma {sigma:.1} grey levels) to `{a}` images"
        ),
        Transform::Denoise { passes } => format!(
            "denoising `{a}` images to the `{b}` images' noise level (edge-preserving filter, {passes} pass(es))"
        ),
        Transform::MatchHistogram { .. } => {
            format!("matching the `{a}` images' grey levels to the `{b}` images' histogram")
        }
        Transform::Blur { sigma } => format!(
            "blurring `{a}` images to the `{b}` images' sharpness (Gaussian, sigma {sigma:.1} px)"
        ),
        Transform::Sharpen { amount } => format!(
            "sharpening `{a}` images to the `{b}` images' sharpness (unsharp mask, amount {amount:.2})"
        ),
        Transform::Resample { ratio } => format!(
            "down- and up-sampling `{a}` images by the classes' source-size ratio ({ratio:.2})"
        ),
        Transform::Jpeg { quality } => format!(
            "re-compressing `{a}` images at the `{b}` images' median JPEG quality ({quality})"
        ),
        Transform::Stretch { factor } => format!(
            "stretching `{a}` images to the `{b}` images' aspect ratio (width x {factor:.2})"
        ),
        Transform::Frame { scale } => format!(
            "{} `{a}` images to the `{b}` images' background share (side x {scale:.2})",
            if *scale >= 1.0 { "padding" } else { "cropping" }
        ),
        Transform::Flip => format!("mirroring `{a}` images left-right"),
    }
}

/// How many values, their quartiles and mean.
fn distribution(values: &[f64]) -> Distribution {
    let q = quartiles(values);
    Distribution {
        images: values.len() as i64,
        median: q.map(|q| q.1),
        q1: q.map(|q| q.0),
        q3: q.map(|q| q.2),
        mean: crate::metrics::mean(values),
    }
}

/// The class-difference table: one row per property and pair of classes (in the model's order).
fn property_rows(data: &[ClassData], grouped_by: &str) -> Vec<AcquisitionPropertyRecord> {
    let mut rows = Vec::new();
    for (i, a) in data.iter().enumerate() {
        for b in &data[i + 1..] {
            for (property, unit, _) in PROPERTIES {
                let (va, vb) = (a.values(property), b.values(property));
                rows.push(AcquisitionPropertyRecord {
                    property: property.to_string(),
                    unit: unit.to_string(),
                    grouped_by: grouped_by.to_string(),
                    class_a: a.name.to_string(),
                    class_b: b.name.to_string(),
                    a: distribution(&va),
                    b: distribution(&vb),
                    separation: separation(&va, &vb),
                });
            }
        }
    }
    rows
}

/// Measures the run's images, runs the counterfactuals on the model and returns the class-difference
/// table and the flip table. `accepted` = (kind, from, to) confirmed or accepted in the reference run.
#[allow(clippy::too_many_arguments)]
pub fn check(
    model: &dyn Classifier,
    inputs: &RunInputs,
    classes: &[String],
    image_cfg: &ImageConfig,
    limits: Limits,
    seed: u64,
    cfg: &AcquisitionConfig,
    accepted: &BTreeSet<(String, String, String)>,
) -> Result<AcquisitionRecords> {
    let t0 = std::time::Instant::now();
    let labelled = !inputs.images.is_empty() && inputs.images.iter().all(|i| i.label.is_some());
    let grouped_by = if labelled { "label" } else { "predicted" };
    let group = |i: &RunImage| -> String {
        if labelled {
            i.label.clone().unwrap_or_default()
        } else {
            i.predicted.clone()
        }
    };
    let mut forwards = 0usize;
    let mut data: Vec<ClassData> = Vec::new();
    for (index, class) in classes.iter().enumerate() {
        let members: Vec<&RunImage> = inputs
            .images
            .iter()
            .filter(|i| &group(i) == class)
            .take(cfg.measure_images)
            .collect();
        // Candidates for the tests: the stored prediction agrees (checked again on the model below);
        // twice as many as needed, in case some no longer do.
        let candidates: BTreeSet<&str> = members
            .iter()
            .filter(|i| &i.predicted == class)
            .take(2 * cfg.test_images)
            .map(|i| i.image_id.as_str())
            .collect();
        let measured: Vec<Measured> = members
            .par_iter()
            .filter_map(|i| {
                read_one(
                    i,
                    image_cfg,
                    limits,
                    candidates.contains(i.image_id.as_str()),
                )
            })
            .collect();
        let mut hist = [0f64; 256];
        for m in &measured {
            hist.iter_mut().zip(&m.histogram).for_each(|(h, v)| *h += v);
        }
        data.push(ClassData {
            index,
            name: class,
            cdf: cdf(&hist),
            measured,
            tested: Vec::new(),
        });
    }
    // The tested images: predicted as their class now.
    for d in &mut data {
        let kept: Vec<(&RunImage, DynamicImage, DynamicImage)> = d
            .measured
            .iter_mut()
            .filter_map(|m| {
                m.source.take().map(|s| {
                    let side = resize_for_model(&s, image_cfg);
                    (m.image, s, side)
                })
            })
            .collect();
        let batch: Vec<Vec<f32>> = kept
            .iter()
            .map(|(_, _, side)| input_of(side, image_cfg))
            .collect();
        let (channels, size) = (image_cfg.channels() as usize, image_cfg.size as usize);
        let probs = predict(model, &batch, channels, size)?;
        forwards += batch.len();
        d.tested = kept
            .into_iter()
            .zip(probs)
            .filter(|(_, p)| argmax(p) == d.index)
            .map(|((image, source, model_side), probs)| Tested {
                image,
                source,
                model_side,
                probs,
            })
            .take(cfg.test_images)
            .collect();
    }
    let properties = property_rows(&data, grouped_by);
    let measured_s = t0.elapsed().as_secs_f64();
    let mut model_s = 0.0;

    let (channels, size) = (image_cfg.channels() as usize, image_cfg.size as usize);
    let mut tests = Vec::new();
    for a in &data {
        for b in &data {
            if a.index == b.index {
                continue;
            }
            for (kind, label) in KINDS {
                let number = tests.len() as i64 + 1;
                let planned = if a.tested.is_empty() {
                    Err(format!("no `{}` image is predicted `{}`", a.name, a.name))
                } else {
                    plan(kind, a, b, image_cfg)
                };
                let t = match planned {
                    Ok(t) => t,
                    Err(reason) => {
                        tests.push(AcquisitionTestRecord::not_tested(
                            number, kind, a.name, b.name, &reason,
                        ));
                        continue;
                    }
                };
                // Toward: A's tested images. Control: the same transformation on B's, or for a
                // geometric change (aspect, framing) the opposite change of the same strength on A's
                // (a rescale costs detail either way; only the direction moves toward B).
                let mirrored = match &t {
                    Transform::Stretch { factor } => Some(Transform::Stretch {
                        factor: 1.0 / factor,
                    }),
                    Transform::Frame { scale } => Some(Transform::Frame { scale: 1.0 / scale }),
                    _ => None,
                };
                let transformed = |set: &[Tested], t: &Transform| {
                    set.par_iter()
                        .map(|x| {
                            let mut rng = rng_for_key(
                                &format!("{}/{kind}/{}", x.image.image_id, b.name),
                                "acquisition",
                                seed,
                            );
                            x.apply(t, image_cfg, &mut rng)
                        })
                        .collect::<Vec<DynamicImage>>()
                };
                let mut run_model = |images: &[DynamicImage]| -> Result<Vec<Vec<f32>>> {
                    let batch: Vec<Vec<f32>> =
                        images.iter().map(|img| input_of(img, image_cfg)).collect();
                    let tm = std::time::Instant::now();
                    let probs = predict(model, &batch, channels, size)?;
                    model_s += tm.elapsed().as_secs_f64();
                    forwards += batch.len();
                    Ok(probs)
                };
                let toward = transformed(&a.tested, &t);
                let pt = run_model(&toward)?;
                // The control only where the rate could confirm (as the place-based test does): a
                // transformation no image reacts to needs none, and a clean model costs half.
                let reach = pt.iter().filter(|p| argmax(p) == b.index).count();
                let pc = if reach as f64 >= cfg.min_flip_rate * pt.len() as f64 {
                    match &mirrored {
                        Some(m) => run_model(&transformed(&a.tested, m))?,
                        None => run_model(&transformed(&b.tested, &t))?,
                    }
                } else {
                    Vec::new()
                };
                let flips_t: Vec<bool> = pt.iter().map(|p| argmax(p) == b.index).collect();
                let toward_counts = Counts {
                    images: pt.len(),
                    flips: flips_t.iter().filter(|&&f| f).count(),
                    mean_shift: pt
                        .iter()
                        .zip(&a.tested)
                        .map(|(p, x)| (p[b.index] - x.probs[b.index]) as f64)
                        .sum::<f64>()
                        / pt.len().max(1) as f64,
                };
                let control_counts = Counts {
                    images: pc.len(),
                    flips: pc
                        .iter()
                        .filter(|p| {
                            if mirrored.is_some() {
                                argmax(p) == b.index
                            } else {
                                argmax(p) != b.index
                            }
                        })
                        .count(),
                    mean_shift: 0.0,
                };
                let mut verdict = verdict(&toward_counts, &control_counts, cfg.min_flip_rate);
                if verdict == "confirmed"
                    && accepted.contains(&(
                        kind.to_string(),
                        a.name.to_string(),
                        b.name.to_string(),
                    ))
                {
                    verdict = "accepted";
                }
                // The example pair: the first image that flipped, else the first tested.
                let ex = flips_t.iter().position(|&f| f).unwrap_or(0);
                let example = &a.tested[ex];
                let (lo, hi) = toward_counts.interval();
                let rate = toward_counts.rate().unwrap_or(0.0);
                let crate_ = control_counts.rate();
                let summary = format!(
                    "{label}: {} flips {:.0}% of {} `{}` images to `{}` (95% CI {:.0}-{:.0}%; control, {}: {}): {}",
                    what(&t, a.name, b.name),
                    100.0 * rate,
                    toward_counts.images,
                    a.name,
                    b.name,
                    100.0 * lo,
                    100.0 * hi,
                    match &mirrored {
                        Some(m) => format!("the opposite change ({}) on `{}` images", m.describe(), a.name),
                        None => format!("the same on `{}` images", b.name),
                    },
                    crate_
                        .map(|r| format!(
                            "{:.0}% of {} {}",
                            100.0 * r,
                            control_counts.images,
                            if mirrored.is_some() {
                                format!("go to `{}`", b.name)
                            } else {
                                format!("leave `{}`", b.name)
                            }
                        ))
                        .unwrap_or_else(|| "not run, the rate cannot confirm".into()),
                    verdict.replace('_', " ")
                );
                tests.push(AcquisitionTestRecord {
                    test: number,
                    kind: kind.to_string(),
                    transform: t.name().to_string(),
                    parameter: t.describe(),
                    strength: t.strength(),
                    from_class: a.name.to_string(),
                    to_class: b.name.to_string(),
                    toward: toward_counts.record(),
                    control: control_counts.record(),
                    verdict: verdict.to_string(),
                    summary,
                    example_image: Some(example.image.image_id.clone()),
                    example_before: png(&example.model_side),
                    example_after: png(&toward[ex]),
                    example_prob_before: Some(example.probs[b.index] as f64),
                    example_prob_after: Some(pt[ex][b.index] as f64),
                });
            }
        }
    }
    tracing::info!(
        "acquisition: {} image(s) read and measured in {measured_s:.1} s; {} counterfactual(s) in {:.1} s, {model_s:.1} s of it in the model",
        data.iter().map(|d| d.measured.len()).sum::<usize>(),
        tests.iter().filter(|t| t.toward.images > 0).count(),
        t0.elapsed().as_secs_f64() - measured_s
    );
    Ok(AcquisitionRecords {
        properties,
        tests,
        images_measured: data.iter().map(|d| d.measured.len() as i64).sum(),
        forward_passes: forwards as i64,
        seconds: t0.elapsed().as_secs_f64(),
        params: serde_json::to_string(cfg).unwrap_or_default(),
    })
}

/// The rule of a counterfactual: **confirmed** when the flip rate's 95% interval lies above
/// `min_flip_rate` (the rate is at least that, significantly) and above the control's interval;
/// **no effect** when it lies below `min_flip_rate`; **not significant** otherwise. A whole-image change
/// can move a model a little for reasons of its own: a gate's `shortcut` asks for a dependence that
/// is both large and specific to the direction of the other class.
pub fn verdict(toward: &Counts, control: &Counts, min_flip_rate: f64) -> &'static str {
    if toward.images == 0 {
        return "not_tested";
    }
    let (lo, hi) = toward.interval();
    if lo >= min_flip_rate && control.images > 0 && lo > control.interval().1 {
        "confirmed"
    } else if hi < min_flip_rate {
        "no_effect"
    } else {
        "not_significant"
    }
}

/// How strongly a confirmed row stands out: its interval's lower bound above the control's upper.
fn margin(t: &AcquisitionTestRecord) -> f64 {
    t.toward.low.unwrap_or(0.0) - t.control.high.unwrap_or(1.0)
}

/// The properties of the class-difference table a kind is about.
fn kind_properties(kind: &str) -> &'static [&'static str] {
    match kind {
        "noise" => &["noise"],
        "intensity" => &["intensity", "contrast"],
        "sharpness" => &["sharpness"],
        "resolution" => &["source_width", "source_height"],
        "jpeg" => &["jpeg", "jpeg_quality"],
        "aspect" => &["aspect"],
        "framing" => &["background"],
        _ => &[],
    }
}

/// How far the kind's properties separate `from` and `to` in the class-difference table:
/// max |separation - 0.5| (0: no difference, 0.5: the property alone tells the classes apart).
fn kind_separation(acq: &AcquisitionRecords, t: &AcquisitionTestRecord) -> f64 {
    acq.properties
        .iter()
        .filter(|p| kind_properties(&t.kind).contains(&p.property.as_str()))
        .filter(|p| {
            (p.class_a == t.from_class && p.class_b == t.to_class)
                || (p.class_a == t.to_class && p.class_b == t.from_class)
        })
        .filter_map(|p| p.separation)
        .map(|s| (s - 0.5).abs())
        .fold(0.0, f64::max)
}

/// The confirmed findings, strongest first: by how far the flip rate's interval stands above the
/// control's; within 0.05, by how far the kind's own property separates the classes in the data (a
/// transformation can move another property too: padding a noisy image and resizing it back also
/// lowers its noise, so "framing" can confirm on a noise shortcut, but the noise is what differs); then
/// causes on the file before the model-side effects they produce (resolution before sharpness).
pub fn confirmed(acq: &AcquisitionRecords) -> Vec<&AcquisitionTestRecord> {
    let precedence = |k: &str| {
        [
            "resolution",
            "jpeg",
            "aspect",
            "framing",
            "noise",
            "intensity",
            "sharpness",
            "flip",
        ]
        .iter()
        .position(|x| *x == k)
        .unwrap_or(99)
    };
    let mut v: Vec<&AcquisitionTestRecord> = acq
        .tests
        .iter()
        .filter(|t| t.verdict == "confirmed")
        .collect();
    v.sort_by(|a, b| {
        let (ma, mb) = (margin(a), margin(b));
        let (sa, sb) = (kind_separation(acq, a), kind_separation(acq, b));
        if (ma - mb).abs() > 0.05 {
            mb.total_cmp(&ma)
        } else if (sa - sb).abs() > 0.01 {
            sb.total_cmp(&sa)
        } else {
            precedence(&a.kind).cmp(&precedence(&b.kind))
        }
    });
    v
}

/// Adds the acquisition part to a run's check: its tables, its cost, and the verdict: a confirmed
/// acquisition finding is a `shortcut`, named by its kind, beside the place-based regions.
pub fn add_to(check: &mut ShortcutCheck, acq: AcquisitionRecords) {
    let c = &mut check.check;
    c.forward_passes += acq.forward_passes;
    c.seconds += acq.seconds;
    let found = confirmed(&acq);
    let tested = acq.tests.iter().filter(|t| t.toward.images > 0).count();
    // The summary ends with "; <images flagged for review>".
    let (head, review) = match c.summary.rfind("; ") {
        Some(i) => (c.summary[..i].to_string(), c.summary[i..].to_string()),
        None => (c.summary.clone(), String::new()),
    };
    c.summary = match found.first() {
        Some(best) => {
            let also: Vec<String> = found[1..]
                .iter()
                .map(|t| {
                    format!(
                        "{} `{}` -> `{}` {:.0}%",
                        kind_label(&t.kind),
                        t.from_class,
                        t.to_class,
                        100.0 * t.toward.rate.unwrap_or(0.0)
                    )
                })
                .collect();
            let acquisition = format!(
                "acquisition shortcut confirmed ({}): {}{}",
                kind_label(&best.kind),
                best.summary
                    .split_once(": ")
                    .map(|x| x.1)
                    .unwrap_or(&best.summary),
                if also.is_empty() {
                    String::new()
                } else {
                    format!("; also confirmed: {}", also.join(", "))
                }
            );
            if c.verdict == "shortcut" {
                format!("{head}; {acquisition}{review}")
            } else {
                // A confirmed finding is conclusive whatever the place-based part could not decide.
                c.verdict = "shortcut".into();
                let place = head
                    .replacen("no shortcut found", "no place-based shortcut", 1)
                    .replacen("inconclusive:", "place-based part inconclusive:", 1);
                format!("{acquisition}; {place}{review}")
            }
        }
        None => {
            let accepted = acq.tests.iter().filter(|t| t.verdict == "accepted").count();
            format!(
                "{head}; no acquisition shortcut ({tested} counterfactual(s) tested{}){review}",
                if accepted > 0 {
                    format!(", {accepted} accepted in the reference run")
                } else {
                    String::new()
                }
            )
        }
    };
    check.acquisition = Some(acq);
}

/// The terminal lines of the acquisition part: the class differences that stand out, the flip table's
/// tested rows, the cost (and its share of the audit's time when known).
pub fn lines(acq: &AcquisitionRecords, audit_seconds: Option<f64>) -> Vec<String> {
    let mut out = Vec::new();
    let strong: Vec<String> = acq
        .properties
        .iter()
        .filter(|p| p.separation.is_some_and(|s| (s - 0.5).abs() >= 0.25))
        .map(|p| {
            format!(
                "{} {} `{}` vs {} `{}` (separation {:.2})",
                p.property,
                p.a.median.map(|v| format!("{v:.3}")).unwrap_or_default(),
                p.class_a,
                p.b.median.map(|v| format!("{v:.3}")).unwrap_or_default(),
                p.class_b,
                p.separation.unwrap_or(0.5)
            )
        })
        .collect();
    out.push(format!(
        "acquisition: {} image(s) measured; class differences (median, separation far from 0.5): {}",
        acq.images_measured,
        if strong.is_empty() {
            "none".into()
        } else {
            strong.join("; ")
        }
    ));
    for t in acq.tests.iter().filter(|t| t.toward.images > 0) {
        out.push(format!(
            "  {} `{}` -> `{}` ({}): {}/{} flips, control {} -> {}",
            kind_label(&t.kind),
            t.from_class,
            t.to_class,
            t.parameter,
            t.toward.flips,
            t.toward.images,
            if t.control.images > 0 {
                format!("{}/{}", t.control.flips, t.control.images)
            } else {
                "not run".into()
            },
            t.verdict.replace('_', " ")
        ));
    }
    let share = audit_seconds
        .filter(|s| *s > 0.0)
        .map(|s| format!(", {:.1}% of the audit's time", 100.0 * acq.seconds / s))
        .unwrap_or_default();
    out.push(format!(
        "acquisition counterfactuals: {} forward passes, {:.1} s{share}",
        acq.forward_passes, acq.seconds
    ));
    out
}

/// The whole acquisition part of a run's check, added to `check`: `reference` = the accepted run
/// whose confirmed findings are not new. Reads the reference's findings from `conn`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    result: &mut ShortcutCheck,
    model: &dyn Classifier,
    conn: &rusqlite::Connection,
    inputs: &RunInputs,
    reference: Option<&str>,
    classes: &[String],
    image_cfg: &ImageConfig,
    limits: Limits,
    seed: u64,
) -> Result<()> {
    let accepted = match reference {
        Some(r) => crate::store::shortcuts::accepted_acquisition(conn, r)
            .map_err(|e| crate::error::Error::Other(format!("reading reference run {r}: {e}")))?,
        None => BTreeSet::new(),
    };
    let acq = check(
        model,
        inputs,
        classes,
        image_cfg,
        limits,
        seed,
        &AcquisitionConfig::default(),
        &accepted,
    )?;
    add_to(result, acq);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::shortcuts::ShortcutCheckRecord;

    fn c(images: usize, flips: usize) -> Counts {
        Counts {
            images,
            flips,
            mean_shift: 0.0,
        }
    }

    #[test]
    fn a_confirmed_finding_decides_a_place_based_inconclusive_verdict() {
        let check = |verdict: &str, summary: &str| ShortcutCheck {
            check: ShortcutCheckRecord {
                run_id: "r".into(),
                reference_run: None,
                images: 64,
                verdict: verdict.into(),
                summary: summary.into(),
                flagged_images: 0,
                min_reproducibility: 0.0,
                params: "{}".into(),
                forward_passes: 100,
                seconds: 1.0,
            },
            methods: Vec::new(),
            regions: Vec::new(),
            tests: Vec::new(),
            flags: Vec::new(),
            acquisition: None,
        };
        let mut found = AcquisitionTestRecord::not_tested(1, "noise", "no", "yes", "");
        found.toward.images = 32;
        found.toward.flips = 31;
        found.toward.rate = Some(31.0 / 32.0);
        found.toward.low = Some(0.84);
        found.control.images = 32;
        found.control.rate = Some(0.0);
        found.control.high = Some(0.11);
        found.verdict = "confirmed".into();
        found.summary = "noise level: adding noise flips 97% of 32 `no` images: confirmed".into();
        let records = |tests: Vec<AcquisitionTestRecord>| AcquisitionRecords {
            properties: Vec::new(),
            tests,
            images_measured: 64,
            forward_passes: 80,
            seconds: 0.5,
            params: "{}".into(),
        };
        let mut c = check(
            "inconclusive",
            "inconclusive: 2 candidate region(s) could not reach significance for lack of images (...); 1 image flagged",
        );
        add_to(&mut c, records(vec![found.clone()]));
        assert_eq!(c.check.verdict, "shortcut");
        assert_eq!(c.check.forward_passes, 180);
        assert!(
            c.check
                .summary
                .starts_with("acquisition shortcut confirmed (noise level)")
                && c.check
                    .summary
                    .contains("; place-based part inconclusive: 2 candidate")
                && c.check.summary.ends_with("; 1 image flagged"),
            "{}",
            c.check.summary
        );
        // Nothing confirmed: the place-based verdict stands, inconclusive included.
        let mut c = check(
            "inconclusive",
            "inconclusive: no method's maps can be trusted",
        );
        found.verdict = "not_significant".into();
        add_to(&mut c, records(vec![found]));
        assert_eq!(c.check.verdict, "inconclusive");
        assert!(c
            .check
            .summary
            .contains("no acquisition shortcut (1 counterfactual(s) tested)"));
    }

    #[test]
    fn the_acquisition_verdict_rule() {
        // 31 of 32 against 0 of 32: confirmed.
        assert_eq!(verdict(&c(32, 31), &c(32, 0), 0.3), "confirmed");
        // 25 of 40 (the issue's noise model): interval 0.47-0.76, above 0.3 and above 0 of 40's 0.09.
        assert_eq!(verdict(&c(40, 25), &c(40, 0), 0.3), "confirmed");
        // 8 of 24 against 0 of 27: the rate is 33% but its interval reaches down to 18%.
        assert_eq!(verdict(&c(24, 8), &c(27, 0), 0.3), "not_significant");
        // As many flips as the control: not significant.
        assert_eq!(verdict(&c(32, 20), &c(32, 18), 0.3), "not_significant");
        // No control run: never confirmed.
        assert_eq!(verdict(&c(32, 32), &c(0, 0), 0.3), "not_significant");
        // 0 of 32: no effect (upper bound 0.107).
        assert_eq!(verdict(&c(32, 0), &c(0, 0), 0.3), "no_effect");
        assert_eq!(verdict(&c(0, 0), &c(0, 0), 0.3), "not_tested");
    }
}
