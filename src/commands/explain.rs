//! `tumor-audit explain`: pictures of every method on a few images (one labelled PNG per image x
//! method with its colour bar, the raw maps as .npy, the brain mask, and labelled montages), replacing the
//! previous explain output of the folder once complete.
use anyhow::{bail, Context as _};
use tch::Tensor;

use super::{prepare_samples, progress, Plan};
use crate::attribution::{self, Subject};
use crate::cli::ExplainArgs;
use crate::dataset::Dataset;
use crate::display::{self, font, Caption, ColorBar};
use crate::exit::Exit;
use crate::metrics::median;
use crate::output::{Kind, Staged};

/// [`Exit::Partial`] when an input could not be read or a requested method could not run on an image
/// (each is printed with its reason); the pictures of everything else are written.
pub fn run(ctx: &Plan, args: &ExplainArgs) -> anyhow::Result<Exit> {
    // `--target` is checked against the classes like `explain.target`, before any work.
    let rule = match &args.target {
        Some(t) => t.resolve(&ctx.classes)?,
        None => ctx.target,
    };
    let crate::plan::ModelPlan {
        model,
        explain: cfg,
        ..
    } = ctx.model_plan(&args.methods)?;
    let ds = Dataset::from_paths(&args.inputs)?;
    let (ok, skipped) = prepare_samples(
        &ds.samples,
        &ctx.settings.donnees.image,
        ctx.limits(),
        "decoding",
    );
    for s in &skipped {
        tracing::warn!("skipped {}: {}", s.path.display(), s.reason);
    }
    let mut failures = skipped.len();
    if ok.is_empty() {
        bail!("no usable image among the inputs");
    }
    let target = args
        .out
        .clone()
        .unwrap_or_else(|| ctx.settings.output.dir.join("explain"));
    // Written into a fresh folder that replaces the previous explain output once complete.
    let staged = Staged::begin(&target, Kind::Explain)?;
    let out = staged.dir().to_path_buf();
    let size = ctx.settings.donnees.image.size;
    let params = ctx.settings.display;
    let mut rows: Vec<Vec<image::RgbImage>> = vec![Vec::new(); cfg.methods.len() + 1];
    let mut col_labels: Vec<Caption> = Vec::new();
    let mut montage_no = 0;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cfg.methods.len()];
    let pb = progress((ok.len() * cfg.methods.len()) as u64, "explaining", "maps");
    for (i, (sample, id, prep)) in ok.iter().enumerate() {
        let label = sample.label.or_else(|| {
            let parent = sample.path.parent()?.file_name()?.to_str()?;
            ctx.classes.iter().position(|c| c == parent)
        });
        let subject = match Subject::new(&model, prep, label, rule) {
            Ok(s) => s,
            Err(e) => {
                pb.suspend(|| tracing::warn!("{}: predict failed: {e}", sample.path.display()));
                failures += 1;
                pb.inc(cfg.methods.len() as u64);
                continue;
            }
        };
        let (predicted, probs) = (subject.predicted, &subject.probs);
        let stem = format!(
            "{}-{}",
            sample
                .path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy(),
            &id[..8]
        );
        let upscale = (256 / size).max(1);
        rows[0].push(display::upscale(
            &display::grey_to_rgb(&prep.grey, size, size, 1),
            upscale,
        ));
        // The true class when the folder names one of the model's classes, else the folder name.
        let folder = sample
            .path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().to_string());
        let truth = match (label, folder) {
            (Some(l), _) => ctx.classes[l].clone(),
            (None, Some(f)) => format!("{f} (folder, not a class of the model)"),
            (None, None) => "unknown".into(),
        };
        let file_name = sample
            .path
            .file_name()
            .map_or_else(|| stem.clone(), |n| n.to_string_lossy().into_owned());
        let (verdict, verdict_colour) = match label {
            Some(l) if l == predicted => (" right", font::GREEN),
            Some(_) => (" WRONG", font::RED),
            None => ("", font::BLACK),
        };
        let image_caption = Caption::text(&file_name)
            .line(format!("true: {truth}"), font::BLACK)
            .line(
                format!(
                    "predicted: {} ({:.2}){verdict}",
                    ctx.classes[predicted], probs[predicted]
                ),
                verdict_colour,
            );
        col_labels.push(image_caption.clone());
        // The brain mask the audit measures against, as a debug picture.
        let (mask, _) = crate::brain_mask::brain_mask(&prep.grey, prep.size, prep.size);
        let mask_png = out.join(format!("{stem}__brain_mask.png"));
        mask.to_debug_image(&prep.grey)
            .save(&mask_png)
            .with_context(|| format!("cannot write {}", mask_png.display()))?;
        let input = subject.input(id, &prep.grey);
        let maps = attribution::explain_image(&model, &cfg, &cfg.methods, &input);
        for (m, (method, result)) in maps.into_iter().enumerate() {
            match result {
                Ok(a) => {
                    times[m].push(a.seconds);
                    let png = display::overlay(&prep.grey, 1, &a.map, size, size, &params);
                    // The single picture says what it shows: image, truth, prediction, method,
                    // and a colour bar with the raw values of its ends.
                    let big = display::upscale(&png, upscale);
                    let mut caption = image_caption.clone();
                    caption
                        .0
                        .insert(1, (method.title().to_string(), font::BLACK));
                    let bar = ColorBar::for_range(&params, display::display_range(&a.map, &params));
                    let labelled = display::stack(&[
                        display::text_block(&caption, big.width()),
                        big,
                        bar.draw(size * upscale),
                    ]);
                    let file = out.join(format!("{stem}__{}.png", method.name()));
                    labelled
                        .save(&file)
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    Tensor::from_slice(&a.map)
                        .view([size as i64, size as i64])
                        .write_npy(out.join(format!("{stem}__{}.npy", method.name())))?;
                    rows[m + 1].push(display::upscale(&png, upscale));
                    if let Some(e) = a.completeness_error {
                        tracing::debug!(
                            "{}: IG completeness error {:.4}%",
                            sample.path.display(),
                            100.0 * e
                        );
                    }
                }
                Err(e) => {
                    // Through the log, so it is seen without a terminal too.
                    pb.suspend(|| {
                        tracing::warn!("{}: {} failed: {e}", sample.path.display(), method.title())
                    });
                    failures += 1;
                    rows[m + 1].push(image::RgbImage::from_pixel(
                        size * upscale,
                        size * upscale,
                        image::Rgb([255, 255, 255]),
                    ));
                }
            }
            pb.inc(1);
        }
        if rows[0].len() == args.per_montage.max(1) || i + 1 == ok.len() {
            let mut labels = vec!["original".to_string()];
            labels.extend(cfg.methods.iter().map(|m| m.title().to_string()));
            let grid = display::montage(&rows, &labels, &col_labels);
            let bar = ColorBar::per_map(&params).draw(grid.width().min(640));
            let img = display::stack(&[grid, bar]);
            let name = if montage_no == 0 {
                "montage.png".to_string()
            } else {
                format!("montage-{montage_no}.png")
            };
            img.save(out.join(&name))
                .with_context(|| format!("cannot write {name}"))?;
            montage_no += 1;
            rows.iter_mut().for_each(|r| r.clear());
            col_labels.clear();
        }
    }
    pb.finish_and_clear();
    let out = staged.commit()?;
    println!("{} image(s) explained into {}", ok.len(), out.display());
    println!("{:<22} {:>12}", "method", "s/image");
    for (m, method) in cfg.methods.iter().enumerate() {
        if let Some(med) = median(&times[m]) {
            println!("{:<22} {:>12.3}", method.title(), med);
        }
    }
    if failures > 0 {
        println!(
            "{failures} input(s) or map(s) failed (see the lines above): exit code {}",
            Exit::Partial.code()
        );
        return Ok(Exit::Partial);
    }
    Ok(Exit::Ok)
}
