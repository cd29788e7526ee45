//! The audit job runner: streams a test set through decode -> brain mask -> prediction -> every
//! configured attribution -> metrics, and sends one result per image to the single SQLite writer.
//!
//! Threads: a producer thread decodes and preprocesses images with rayon (CPU work) into a bounded
//! channel, the calling thread does the tensor work (libtorch uses its own intra-op threads), and the
//! writer thread owns the database connection. Memory does not grow with the size of the test set.
use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Instant;

use rayon::prelude::*;

use crate::attribution::{self, ExplainConfig, Method, Subject, TargetRule};
use crate::brain_mask;
use crate::dataset::{self, Limits, Sample};
use crate::error::{Error, Result};
use crate::metrics;
use crate::model::Classifier;
use crate::outline::{Outline, Outlines};
use crate::preprocess::{self, ImageConfig, Prepared};
use crate::store::{
    AgreementRecord, ErrorRecord, FaithfulnessRecord, ImageRecord, ImageResult, LocalisationRecord,
    MapRecord, MetricRecord, OutlineRecord, PredictionRecord, WriterMessage,
};
use crate::trust::{self, FaithfulnessConfig};

/// Resolution of the stored maps and of the agreement computations.
pub const MAP_STORE_SIZE: usize = 64;
/// Width of the border band, as a fraction of the image side.
pub const BORDER_FRACTION: f32 = 0.1;
/// The key of the faithfulness curves in [`AuditStats`]' timings (seconds for all curves of an image).
pub const FAITHFULNESS: &str = "faithfulness";

/// An image decoded and ready for the model, or the reason it is not.
pub enum Decoded {
    Ready {
        sample: Sample,
        id: String,
        prep: Prepared,
        mask: brain_mask::BrainMask,
        mask_fallback: bool,
    },
    Failed {
        sample: Sample,
        id: Option<String>,
        stage: &'static str,
        reason: String,
    },
    /// Already done in this run (resume).
    Done,
}

/// What the runner needs besides the model.
pub struct AuditJob<'a> {
    pub run_id: String,
    pub classes: &'a [String],
    pub image_cfg: &'a ImageConfig,
    pub explain: &'a ExplainConfig,
    /// `explain.target` checked against `classes`.
    pub target: TargetRule,
    /// The faithfulness curves, when they are on.
    pub faithfulness: Option<&'a FaithfulnessConfig>,
    pub limits: Limits,
    pub done: HashSet<String>,
    /// The test set's ground-truth outlines (`data.masks`); empty when there are none.
    pub outlines: &'a Outlines,
}

/// Per-invocation counters for the summary.
#[derive(Default, Debug)]
pub struct AuditStats {
    /// Images predicted and explained (some methods may have failed on them: see `failed`).
    pub images: usize,
    pub skipped_done: usize,
    /// Images that failed at any stage: decode, prediction, a method or the faithfulness curves (a
    /// failed write is counted by the writer).
    pub failed: usize,
    pub correct: usize,
    pub labelled: usize,
    pub method_seconds: std::collections::BTreeMap<&'static str, (f64, usize)>,
    pub method_errors: std::collections::BTreeMap<&'static str, usize>,
}

/// Decodes in chunks on the rayon pool and sends in order over a bounded channel.
pub fn spawn_decoder(
    samples: Vec<Sample>,
    image_cfg: ImageConfig,
    limits: Limits,
    done: HashSet<String>,
    chunk: usize,
) -> (Receiver<Decoded>, std::thread::JoinHandle<()>) {
    let (tx, rx) = sync_channel::<Decoded>(chunk * 2);
    let handle = std::thread::spawn(move || {
        for part in samples.chunks(chunk.max(1)) {
            let decoded: Vec<Decoded> = part
                .par_iter()
                .map(|s| decode_one(s, &image_cfg, limits, &done))
                .collect();
            for d in decoded {
                if tx.send(d).is_err() {
                    return;
                }
            }
        }
    });
    (rx, handle)
}

fn decode_one(s: &Sample, cfg: &ImageConfig, limits: Limits, done: &HashSet<String>) -> Decoded {
    // Hash first: a resumed run skips finished images without decoding them.
    let bytes = match std::fs::read(&s.path) {
        Ok(b) => b,
        Err(e) => {
            return Decoded::Failed {
                sample: s.clone(),
                id: None,
                stage: "decode",
                reason: format!("cannot read: {e}"),
            }
        }
    };
    let id = dataset::content_id(&bytes);
    if done.contains(&id) {
        return Decoded::Done;
    }
    match dataset::read_image(&s.path, limits) {
        Ok(d) => {
            let prep = preprocess::prepare(&d.image, cfg);
            let (mask, fallback) = brain_mask::brain_mask(&prep.grey, prep.size, prep.size);
            Decoded::Ready {
                sample: s.clone(),
                id,
                prep,
                mask,
                mask_fallback: fallback,
            }
        }
        Err(reason) => Decoded::Failed {
            sample: s.clone(),
            id: Some(id),
            stage: "decode",
            reason,
        },
    }
}

/// Explains one decoded image with every configured method and computes its metrics.
#[allow(clippy::too_many_arguments)]
pub fn audit_image(
    model: &dyn Classifier,
    job: &AuditJob,
    sample: &Sample,
    id: &str,
    prep: &Prepared,
    mask: &brain_mask::BrainMask,
    mask_fallback: bool,
    stats: &mut AuditStats,
) -> Result<ImageResult> {
    let t0 = Instant::now();
    let size = prep.size;
    let label = sample.label;
    let image = ImageRecord {
        image_id: id.to_string(),
        path: sample.path.to_string_lossy().to_string(),
        label: label.map(|l| job.classes[l].clone()),
        width: prep.original_width as i64,
        height: prep.original_height as i64,
        brain_area_fraction: mask.area_fraction() as f64,
        mask_fallback,
    };
    let subject = Subject::new(model, prep, label, job.target)?;
    let (predicted, target, probs) = (subject.predicted, subject.target, &subject.probs);
    let correct = label.map(|l| l == predicted);
    if let Some(c) = correct {
        stats.labelled += 1;
        stats.correct += c as usize;
    }
    let prediction = PredictionRecord {
        predicted: job.classes[predicted].clone(),
        confidence: subject.confidence() as f64,
        probabilities: serde_json::to_string(
            &job.classes
                .iter()
                .zip(probs)
                .map(|(c, p)| (c.clone(), *p as f64))
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .unwrap_or_default(),
        target: job.classes[target].clone(),
        correct,
    };
    let border = brain_mask::border_band(size, size, BORDER_FRACTION);
    let input = subject.input(id, &prep.grey);
    let mut metrics_rows = Vec::new();
    let mut maps = Vec::new();
    let mut small: Vec<(Method, Vec<f32>)> = Vec::new();
    let faithfulness_on = job.faithfulness.is_some();
    let mut full: Vec<(Method, Vec<f32>)> = Vec::new();
    let mut errors = Vec::new();
    // The ground-truth outline on the map grid; a mask that cannot be used is this image's error.
    let outline = match job.outlines.outline(
        sample,
        prep.original_width,
        prep.original_height,
        size,
        job.limits,
    ) {
        Ok(o) => o,
        Err(message) => {
            errors.push(failure(
                job,
                sample,
                Some(id),
                "metrics".into(),
                format!("outline: {message}"),
            ));
            None
        }
    };
    let tolerance = metrics::pointing_tolerance(size);
    let mut localisation = Vec::new();
    for (method, result) in
        attribution::explain_image(model, job.explain, &job.explain.methods, &input)
    {
        match result {
            Ok(a) => {
                let m = metrics::map_metrics(&a.map, &mask.inside, &border);
                if let Some(l) = outline
                    .as_ref()
                    .and_then(|o| metrics::localisation(&a.map, &o.inside, size, tolerance))
                {
                    localisation.push(LocalisationRecord {
                        method: method.name().to_string(),
                        mass_on_tumor: l.mass_on_tumor as f64,
                        pointing_hit: l.pointing_hit,
                        energy_pointing: l.energy_pointing as f64,
                        iou_top_area: l.iou_top_area as f64,
                    });
                }
                let e = stats.method_seconds.entry(method.name()).or_default();
                e.0 += a.seconds;
                e.1 += 1;
                metrics_rows.push(MetricRecord {
                    method: method.name().to_string(),
                    mass_inside: m.mass_inside as f64,
                    mass_background: m.mass_background as f64,
                    mass_border: m.mass_border as f64,
                    concentration_inside: m.concentration_inside as f64,
                    concentration_border: m.concentration_border as f64,
                    top1_inside: m.top1_inside as f64,
                    top5_inside: m.top5_inside as f64,
                    gini: m.gini as f64,
                    empty: m.empty,
                    completeness_error: a.completeness_error,
                    segments: a.segments.map(|s| s as i64),
                    seconds: a.seconds,
                    reproducibility: a.reproducibility,
                });
                maps.push(MapRecord::f16le(
                    method.name(),
                    &metrics::downsample(&a.map, size, size, MAP_STORE_SIZE, MAP_STORE_SIZE),
                    MAP_STORE_SIZE,
                    MAP_STORE_SIZE,
                ));
                small.push((
                    method,
                    metrics::downsample(
                        &a.map,
                        size,
                        size,
                        metrics::AGREEMENT_SIZE,
                        metrics::AGREEMENT_SIZE,
                    ),
                ));
                if faithfulness_on {
                    full.push((method, a.map));
                }
            }
            Err(e) => {
                *stats.method_errors.entry(method.name()).or_default() += 1;
                errors.push(failure(
                    job,
                    sample,
                    Some(id),
                    format!("attribution:{}", method.name()),
                    e.to_string(),
                ));
            }
        }
    }
    let mut agreement = Vec::new();
    for i in 0..small.len() {
        for j in (i + 1)..small.len() {
            agreement.push(AgreementRecord {
                method_a: small[i].0.name().to_string(),
                method_b: small[j].0.name().to_string(),
                spearman: metrics::spearman(&small[i].1, &small[j].1) as f64,
                iou_top10: metrics::top_fraction_iou(&small[i].1, &small[j].1, 0.1) as f64,
            });
        }
    }
    let mut faithfulness = Vec::new();
    if let Some(f) = job.faithfulness {
        let t = Instant::now();
        let maps: Vec<(Method, &[f32])> = full.iter().map(|(m, v)| (*m, v.as_slice())).collect();
        match trust::faithfulness::image_curves(
            model,
            job.explain,
            f,
            id,
            &subject.x,
            target as i64,
            &maps,
        ) {
            Ok(curves) => {
                faithfulness = curves
                    .into_iter()
                    .map(|c| FaithfulnessRecord {
                        method: c.method,
                        steps: f.steps as i64,
                        score: f.score.name().to_string(),
                        deletion_auc: c.curves.deletion_auc,
                        insertion_auc: c.curves.insertion_auc,
                        deletion_curve: c.curves.deletion,
                        insertion_curve: c.curves.insertion,
                        seconds: c.seconds,
                    })
                    .collect();
                let e = stats.method_seconds.entry(FAITHFULNESS).or_default();
                e.0 += t.elapsed().as_secs_f64();
                e.1 += 1;
            }
            Err(e) => {
                *stats.method_errors.entry(FAITHFULNESS).or_default() += 1;
                errors.push(failure(
                    job,
                    sample,
                    Some(id),
                    "metrics".into(),
                    format!("faithfulness curves: {e}"),
                ));
            }
        }
    }
    stats.images += 1;
    // An image on which any step failed is a failed image, even though its other results are kept.
    if !errors.is_empty() {
        stats.failed += 1;
    }
    Ok(ImageResult {
        run_id: job.run_id.clone(),
        image,
        prediction: Some(prediction),
        metrics: metrics_rows,
        agreement,
        maps,
        faithfulness,
        outline: outline.as_ref().map(|o| outline_record(o, tolerance)),
        localisation,
        errors,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The stored form of an outline: its figures and its coverage pooled to the stored maps' grid.
fn outline_record(o: &Outline, tolerance: usize) -> OutlineRecord {
    let cover: Vec<f32> = o.inside.iter().map(|&b| b as u8 as f32).collect();
    let pooled = metrics::downsample(&cover, o.side, o.side, MAP_STORE_SIZE, MAP_STORE_SIZE);
    OutlineRecord {
        mask_path: dataset::path_text(&o.mask_path),
        grid: o.side as i64,
        area_fraction: o.area_fraction(),
        tolerance_px: tolerance as i64,
        outline_size: MAP_STORE_SIZE as i64,
        outline: pooled
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect(),
    }
}

/// The error record of a failed step, logged at once (with its path and reason) so that no failure is
/// seen only in the database.
fn failure(
    job: &AuditJob,
    sample: &Sample,
    id: Option<&str>,
    stage: String,
    message: String,
) -> ErrorRecord {
    tracing::warn!("{}: {stage} failed: {message}", sample.path.display());
    ErrorRecord {
        run_id: job.run_id.clone(),
        image_id: id.map(str::to_string),
        // A name that is not UTF-8 (refused by the decoder) is kept escaped, not lossy.
        path: dataset::path_text(&sample.path),
        stage,
        message,
    }
}

/// Runs the whole job: every image of `samples` goes to `send` as one message; `tick` is called once
/// per image (done, failed or resumed). An image that fails at any step is recorded and counted, and the
/// run goes on; the run stops only when the writer does ([`Error::WriterStopped`]).
pub fn run(
    model: &dyn Classifier,
    job: &AuditJob,
    samples: Vec<Sample>,
    send: &std::sync::mpsc::SyncSender<WriterMessage>,
    tick: &dyn Fn(),
) -> Result<AuditStats> {
    let mut stats = AuditStats::default();
    let (rx, handle) = spawn_decoder(
        samples,
        job.image_cfg.clone(),
        job.limits,
        job.done.clone(),
        8,
    );
    let send_err = |_| Error::WriterStopped;
    for d in rx {
        match d {
            Decoded::Done => stats.skipped_done += 1,
            Decoded::Failed {
                sample,
                id,
                stage,
                reason,
            } => {
                stats.failed += 1;
                let record = failure(job, &sample, id.as_deref(), stage.to_string(), reason);
                send.send(WriterMessage::Error(record)).map_err(send_err)?;
            }
            Decoded::Ready {
                sample,
                id,
                prep,
                mask,
                mask_fallback,
            } => {
                let msg = match audit_image(
                    model,
                    job,
                    &sample,
                    &id,
                    &prep,
                    &mask,
                    mask_fallback,
                    &mut stats,
                ) {
                    Ok(r) => WriterMessage::Image(Box::new(r)),
                    // The prediction failed (e.g. the model's output is not finite): a failed image.
                    Err(e) => {
                        stats.failed += 1;
                        WriterMessage::Error(failure(
                            job,
                            &sample,
                            Some(&id),
                            "predict".into(),
                            e.to_string(),
                        ))
                    }
                };
                send.send(msg).map_err(send_err)?;
            }
        }
        tick();
    }
    let _ = handle.join();
    Ok(stats)
}

/// Default run name: `nightly-YYYY-MM-DD` (UTC).
pub fn default_run_name() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("nightly-{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// The samples of a class-folder test set (paths only: decoding happens in the stream), the entries
/// that are not candidate images (hidden files, other extensions, nested folders) with the reason, and
/// the images' ground-truth outlines as `masks` (`data.masks`) finds them.
pub fn test_samples(
    dir: &Path,
    classes: &[String],
    limit: Option<usize>,
    masks: &crate::outline::MaskConfig,
) -> Result<(Vec<Sample>, Vec<dataset::Skipped>, Outlines)> {
    let ds = dataset::Dataset::scan(dir, classes)?;
    // Mask files beside the images are not images; masks are paired before `limit` picks.
    let (mut samples, outlines) = Outlines::discover(masks, dir, classes, ds.samples)?;
    if let Some(n) = limit {
        // Keep classes balanced in a limited run: take round robin over classes.
        let mut by_class: Vec<Vec<Sample>> = vec![Vec::new(); classes.len()];
        samples
            .into_iter()
            .for_each(|s| by_class[s.label.unwrap_or(0)].push(s));
        let mut out = Vec::new();
        let mut i = 0;
        while out.len() < n && by_class.iter().any(|c| i < c.len()) {
            for c in &by_class {
                if let Some(s) = c.get(i) {
                    if out.len() < n {
                        out.push(s.clone());
                    }
                }
            }
            i += 1;
        }
        samples = out;
    }
    Ok((samples, ds.skipped, outlines))
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        // 0 = 1970-01-01; 20_000 days later is 2024-10-04 (a known date).
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_000), (2024, 10, 4));
    }
}
