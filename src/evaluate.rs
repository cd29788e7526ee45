//! The notebook's step 1, "charger et évaluer": accuracy, per-class precision/recall/F1, confusion
//! matrix and (binary models) ROC AUC, from labels and predicted probabilities; the per-image
//! predictions as CSV; the folder an evaluation of a data set's split is written to.
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Evaluation {
    pub images: usize,
    pub accuracy: f64,
    pub per_class: Vec<ClassMetrics>,
    /// confusion[true][predicted]
    pub confusion: Vec<Vec<usize>>,
    /// Binary models only: AUC of the probability of class index 1.
    pub roc_auc: Option<f64>,
}

/// `probs[i]` are the class probabilities of image i; the prediction is their argmax.
pub fn evaluate(labels: &[usize], probs: &[Vec<f32>], classes: &[String]) -> Evaluation {
    let k = classes.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (l, p) in labels.iter().zip(probs) {
        confusion[*l][argmax(p)] += 1;
    }
    let n = labels.len();
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    let per_class = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: usize = (0..k).map(|t| confusion[t][c]).sum();
            let support: usize = confusion[c].iter().sum();
            // 0/0 is reported as 0, as scikit-learn does with zero_division=0.
            let precision = if predicted > 0 {
                tp / predicted as f64
            } else {
                0.0
            };
            let recall = if support > 0 {
                tp / support as f64
            } else {
                0.0
            };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassMetrics {
                class: classes[c].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let roc_auc = if k == 2 {
        let scores: Vec<f32> = probs.iter().map(|p| p[1]).collect();
        let positive: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
        roc_auc(&scores, &positive)
    } else {
        None
    };
    Evaluation {
        images: n,
        accuracy: if n > 0 {
            correct as f64 / n as f64
        } else {
            0.0
        },
        per_class,
        confusion,
        roc_auc,
    }
}

pub fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// ROC AUC as the Mann-Whitney statistic: the probability that a random positive scores higher than a
/// random negative, ties counting one half. `None` when one class is absent.
pub fn roc_auc(scores: &[f32], positive: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (1-based) over ties.
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        idx[i..=j].iter().for_each(|&t| ranks[t] = avg);
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(r, _)| r)
        .sum();
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

impl Evaluation {
    /// A readable terminal table.
    pub fn table(&self, title: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{title}: {} images, accuracy {:.2}%",
            self.images,
            100.0 * self.accuracy
        );
        if let Some(auc) = self.roc_auc {
            let _ = writeln!(s, "ROC AUC {auc:.4}");
        }
        let w = self
            .per_class
            .iter()
            .map(|c| c.class.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(s, "{:<w$}  precision  recall      f1  support", "class");
        for c in &self.per_class {
            let _ = writeln!(
                s,
                "{:<w$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}",
                c.class, c.precision, c.recall, c.f1, c.support
            );
        }
        let _ = writeln!(s, "confusion matrix (rows: true, columns: predicted)");
        let _ = write!(s, "{:<w$}", "");
        for c in &self.per_class {
            let _ = write!(s, "  {:>7}", c.class);
        }
        let _ = writeln!(s);
        for (t, row) in self.confusion.iter().enumerate() {
            let _ = write!(s, "{:<w$}", self.per_class[t].class);
            for v in row {
                let _ = write!(s, "  {v:>7}");
            }
            let _ = writeln!(s);
        }
        s
    }

    /// `evaluation.json`, `per_class.csv`, `confusion.csv` in `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::Other(e.to_string()))?;
        std::fs::write(dir.join("evaluation.json"), json)
            .map_err(|e| Error::io("cannot write evaluation.json", e))?;
        let csv_err =
            |e: csv::Error| Error::Other(format!("cannot write CSV in {}: {e}", dir.display()));
        let mut w = csv::Writer::from_path(dir.join("per_class.csv")).map_err(csv_err)?;
        for c in &self.per_class {
            w.serialize(c).map_err(csv_err)?;
        }
        w.flush()
            .map_err(|e| Error::io("cannot write per_class.csv", e))?;
        let mut w = csv::Writer::from_path(dir.join("confusion.csv")).map_err(csv_err)?;
        let mut header = vec!["true\\predicted".to_string()];
        header.extend(self.per_class.iter().map(|c| c.class.clone()));
        w.write_record(&header).map_err(csv_err)?;
        for (t, row) in self.confusion.iter().enumerate() {
            let mut rec = vec![self.per_class[t].class.clone()];
            rec.extend(row.iter().map(|v| v.to_string()));
            w.write_record(&rec).map_err(csv_err)?;
        }
        w.flush()
            .map_err(|e| Error::io("cannot write confusion.csv", e))?;
        Ok(())
    }
}

/// One image's prediction, a row of `predictions.csv`.
pub struct ImagePrediction<'a> {
    /// The file as found under the evaluated folder.
    pub file: &'a Path,
    /// Content id (the audit database's image_id).
    pub image_id: &'a str,
    pub label: usize,
    pub probs: &'a [f32],
}

/// Writes `dir/predictions.csv`: file, image_id, label, predicted, correct, then one probability
/// column per class (`p_<class>`), one row per image in the given order.
pub fn write_predictions(dir: &Path, rows: &[ImagePrediction], classes: &[String]) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let csv_err =
        |e: csv::Error| Error::Other(format!("cannot write CSV in {}: {e}", dir.display()));
    let mut w = csv::Writer::from_path(dir.join("predictions.csv")).map_err(csv_err)?;
    let mut header: Vec<String> = ["file", "image_id", "label", "predicted", "correct"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(classes.iter().map(|c| format!("p_{c}")));
    w.write_record(&header).map_err(csv_err)?;
    let name = |i: usize| classes.get(i).cloned().unwrap_or_else(|| i.to_string());
    for r in rows {
        let predicted = argmax(r.probs);
        let mut rec = vec![
            r.file.display().to_string(),
            r.image_id.to_string(),
            name(r.label),
            name(predicted),
            (predicted == r.label).to_string(),
        ];
        rec.extend(r.probs.iter().map(|p| format!("{p:.6}")));
        w.write_record(&rec).map_err(csv_err)?;
    }
    w.flush()
        .map_err(|e| Error::io("cannot write predictions.csv", e))?;
    Ok(())
}

/// The folder name of an evaluation of `dir`: the data set (the folder above the split, e.g. the
/// data root `data/br35h`) and the split folder, joined with `-` (`br35h-Testing`,
/// `kaggle-sample-Testing`), so that two data sets' evaluations never share a folder. Characters
/// other than letters, digits, `-`, `_` and `.` become `_`.
pub fn folder_name(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let part = |p: Option<&std::ffi::OsStr>| {
        p.map(|s| s.to_string_lossy().to_string())
            .filter(|s| !s.is_empty())
    };
    let split = part(canonical.file_name()).unwrap_or_else(|| "data".into());
    let name = match part(canonical.parent().and_then(Path::file_name)) {
        Some(set) => format!("{set}-{split}"),
        None => split,
    };
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_folders_name_the_data_set_and_the_split() {
        let d = tempfile::tempdir().unwrap();
        for set in ["br35h", "kaggle sample"] {
            std::fs::create_dir_all(d.path().join(set).join("Testing")).unwrap();
        }
        assert_eq!(
            folder_name(&d.path().join("br35h/Testing")),
            "br35h-Testing"
        );
        assert_eq!(
            folder_name(&d.path().join("kaggle sample").join("Testing")),
            "kaggle_sample-Testing"
        );
    }
}
