//! `tumor-audit split`: a leak-free train / validation / test split of a class-folder dataset.
use anyhow::bail;

use crate::cli::SplitArgs;
use crate::dataset::Limits;
use crate::split;

pub fn run(args: &SplitArgs) -> anyhow::Result<()> {
    if args.fractions.len() != 3 || args.fractions.iter().any(|f| !(0.0..=1.0).contains(f)) {
        bail!(
            "--fractions needs three values in [0, 1] (train,validation,test), found {:?}",
            args.fractions
        );
    }
    let total: f64 = args.fractions.iter().sum();
    if (total - 1.0).abs() > 1e-6 {
        bail!("--fractions must add up to 1, found {total}");
    }
    let opts = split::SplitOptions {
        fractions: [args.fractions[0], args.fractions[1], args.fractions[2]],
        max_distance: args.max_distance,
        seed: args.seed,
        keep_groups: !args.leaky,
        dir_names: ["Training".into(), "Validation".into(), "Testing".into()],
    };
    let report = split::split_dataset(&args.source, &args.dest, &opts, Limits::default())?;
    println!(
        "{} images, {} near-duplicate groups ({} images in groups, largest {}), {} groups spanning splits",
        report.images, report.near_duplicate_groups, report.images_in_groups, report.largest_group, report.groups_spanning_splits
    );
    for (split, classes) in &report.images_per_split {
        let groups = report.groups_per_split.get(split).copied().unwrap_or(0);
        println!("  {split:<10} {classes:?}, {groups} groups");
    }
    println!(
        "split hash {}; details in {}",
        &report.split_hash[..16],
        args.dest.join("split.json").display()
    );
    for s in &report.skipped {
        println!("  skipped {}: {}", s.path.display(), s.reason);
    }
    Ok(())
}
