//! Leak-free train / validation / test split of a class-folder dataset: near-duplicate images
//! (average hash within a Hamming distance) form groups, and every group goes to one side only.
//! Deterministic: the same files and seed always give the same split.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::dataset::{self, Dataset, Limits, Skipped};
use crate::error::{Error, Result};

/// 256-bit average hash: 16x16 grey, bit = pixel > mean.
pub type AHash = [u64; 4];

pub fn average_hash(img: &image::DynamicImage) -> AHash {
    let small = img.resize_exact(16, 16, FilterType::Triangle).to_luma8();
    let px = small.as_raw();
    let mean = px.iter().map(|&v| v as f32).sum::<f32>() / px.len() as f32;
    let mut h = [0u64; 4];
    for (i, &v) in px.iter().enumerate() {
        if v as f32 > mean {
            h[i / 64] |= 1 << (i % 64);
        }
    }
    h
}

pub fn hamming(a: &AHash, b: &AHash) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Union-find over indices.
struct Groups {
    parent: Vec<usize>,
}

impl Groups {
    fn new(n: usize) -> Self {
        Groups {
            parent: (0..n).collect(),
        }
    }
    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // Smaller index as root keeps the result independent of pair order.
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi] = lo;
        }
    }
}

/// Near-duplicate groups: connected components of "Hamming distance <= max_distance" (and identical
/// content ids). Returns one group index per item, groups numbered from 0 in order of first member.
pub fn near_duplicate_groups(hashes: &[AHash], ids: &[String], max_distance: u32) -> Vec<usize> {
    let n = hashes.len();
    let mut g = Groups::new(n);
    for i in 0..n {
        for j in (i + 1)..n {
            if ids[i] == ids[j] || hamming(&hashes[i], &hashes[j]) <= max_distance {
                g.union(i, j);
            }
        }
    }
    let mut number = BTreeMap::new();
    (0..n)
        .map(|i| {
            let r = g.find(i);
            let next = number.len();
            *number.entry(r).or_insert(next)
        })
        .collect()
}

pub const SPLITS: [&str; 3] = ["train", "validation", "test"];

/// Assigns whole groups to splits. Groups are visited in an order fixed by (seed, smallest content id
/// in the group); each goes to the split of its class that is furthest below its target fraction.
/// With `keep_groups = false` every image is its own group (the leaky random split, for comparison).
pub fn assign(
    groups: &[usize],
    labels: &[usize],
    ids: &[String],
    fractions: [f64; 3],
    seed: u64,
) -> Vec<usize> {
    let n_groups = groups.iter().max().map_or(0, |m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
    for (i, &g) in groups.iter().enumerate() {
        members[g].push(i);
    }
    let key = |g: &Vec<usize>| {
        let min_id = g.iter().map(|&i| ids[i].as_str()).min().unwrap_or("");
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(min_id.as_bytes());
        h.finalize().to_vec()
    };
    let mut order: Vec<(Vec<u8>, usize)> = members
        .iter()
        .enumerate()
        .map(|(gi, m)| (key(m), gi))
        .collect();
    order.sort();
    let n_classes = labels.iter().max().map_or(0, |m| m + 1);
    let class_total: Vec<usize> = (0..n_classes)
        .map(|c| labels.iter().filter(|&&l| l == c).count())
        .collect();
    let mut filled = vec![[0usize; 3]; n_classes];
    let mut out = vec![0usize; groups.len()];
    for (_, gi) in order {
        let m = &members[gi];
        if m.is_empty() {
            continue;
        }
        // A group's class is its majority label (Br35H groups never span classes).
        let mut counts = vec![0usize; n_classes];
        m.iter().for_each(|&i| counts[labels[i]] += 1);
        let class = (0..n_classes)
            .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
            .unwrap_or(0);
        let total = class_total[class] as f64;
        let split = (0..3)
            .max_by(|&a, &b| {
                let da = fractions[a] * total - filled[class][a] as f64;
                let db = fractions[b] * total - filled[class][b] as f64;
                da.partial_cmp(&db)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(b.cmp(&a))
            })
            .unwrap_or(0);
        filled[class][split] += m.len();
        m.iter().for_each(|&i| out[i] = split);
    }
    out
}

/// What went where, stored as `split.json` beside the split folders.
#[derive(Debug, Serialize)]
pub struct SplitReport {
    pub source: PathBuf,
    pub classes: Vec<String>,
    pub keep_groups: bool,
    pub max_hamming_distance: u32,
    pub seed: u64,
    pub fractions: [f64; 3],
    pub images: usize,
    pub near_duplicate_groups: usize,
    pub images_in_groups: usize,
    pub largest_group: usize,
    /// split -> class -> images
    pub images_per_split: BTreeMap<String, BTreeMap<String, usize>>,
    /// split -> groups of >= 2 images placed there
    pub groups_per_split: BTreeMap<String, usize>,
    pub groups_spanning_splits: usize,
    /// sha256 over the sorted (split, content id) list: identifies the split in model cards.
    pub split_hash: String,
    pub skipped: Vec<Skipped>,
}

pub struct SplitOptions {
    pub fractions: [f64; 3],
    pub max_distance: u32,
    pub seed: u64,
    pub keep_groups: bool,
    pub dir_names: [String; 3],
}

/// Reads `source/<class>/*`, splits, copies files into `dest/<Training|Validation|Testing>/<class>/`
/// and writes `dest/split.json`.
pub fn split_dataset(
    source: &Path,
    dest: &Path,
    opts: &SplitOptions,
    limits: Limits,
) -> Result<SplitReport> {
    let ds = Dataset::scan(source, &[])?;
    let (ok, mut skipped) = dataset::read_all(&ds.samples, limits);
    skipped.extend(ds.skipped.iter().cloned());
    let hashes: Vec<AHash> = {
        use rayon::prelude::*;
        ok.par_iter().map(|(_, d)| average_hash(&d.image)).collect()
    };
    let ids: Vec<String> = ok.iter().map(|(_, d)| d.id.clone()).collect();
    let labels: Vec<usize> = ok.iter().map(|(s, _)| s.label.unwrap_or(0)).collect();
    let groups = if opts.keep_groups {
        near_duplicate_groups(&hashes, &ids, opts.max_distance)
    } else {
        (0..ok.len()).collect()
    };
    let assignment = assign(&groups, &labels, &ids, opts.fractions, opts.seed);

    let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
    groups
        .iter()
        .for_each(|&g| *sizes.entry(g).or_default() += 1);
    let real_groups: Vec<usize> = sizes
        .iter()
        .filter(|(_, &n)| n >= 2)
        .map(|(&g, _)| g)
        .collect();
    let mut group_splits: BTreeMap<usize, std::collections::BTreeSet<usize>> = BTreeMap::new();
    for (i, &g) in groups.iter().enumerate() {
        group_splits.entry(g).or_default().insert(assignment[i]);
    }
    let mut groups_per_split = BTreeMap::new();
    for &g in &real_groups {
        for &s in &group_splits[&g] {
            *groups_per_split.entry(SPLITS[s].to_string()).or_insert(0) += 1;
        }
    }
    let groups_spanning = group_splits.values().filter(|s| s.len() > 1).count();

    if dest.exists() {
        for name in &opts.dir_names {
            let d = dest.join(name);
            if d.exists() {
                std::fs::remove_dir_all(&d)
                    .map_err(|e| Error::io(format!("cannot clear {}", d.display()), e))?;
            }
        }
    }
    let mut images_per_split: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut lines = Vec::new();
    for (i, (s, d)) in ok.iter().enumerate() {
        let split = assignment[i];
        let class = &ds.classes[labels[i]];
        let dir = dest.join(&opts.dir_names[split]).join(class);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let name = s.path.file_name().unwrap_or_default();
        std::fs::copy(&s.path, dir.join(name))
            .map_err(|e| Error::io(format!("cannot copy {}", s.path.display()), e))?;
        *images_per_split
            .entry(SPLITS[split].to_string())
            .or_default()
            .entry(class.clone())
            .or_insert(0) += 1;
        lines.push(format!("{}\t{}\n", SPLITS[split], d.id));
    }
    lines.sort();
    let mut h = Sha256::new();
    lines.iter().for_each(|l| h.update(l.as_bytes()));
    let split_hash: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();

    let report = SplitReport {
        source: source.to_path_buf(),
        classes: ds.classes.clone(),
        keep_groups: opts.keep_groups,
        max_hamming_distance: opts.max_distance,
        seed: opts.seed,
        fractions: opts.fractions,
        images: ok.len(),
        near_duplicate_groups: real_groups.len(),
        images_in_groups: real_groups.iter().map(|g| sizes[g]).sum(),
        largest_group: sizes.values().copied().max().unwrap_or(0),
        images_per_split,
        groups_per_split,
        groups_spanning_splits: groups_spanning,
        split_hash,
        skipped,
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(dest.join("split.json"), json)
        .map_err(|e| Error::io("cannot write split.json", e))?;
    Ok(report)
}
