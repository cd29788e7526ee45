//! `diff RUN_A RUN_B`: accuracy, per-class metrics and bias metrics of two runs side by side with their
//! deltas (B - A), on the images both runs audited, the two runs' verdicts (confirmed shortcuts, share
//! flagged by trusted methods, inconclusive or not), and `--fail-on` rules that gate a nightly job.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension};

use super::table::{Cell, Table};
use super::QueryError;

/// What one run holds, per image.
struct RunData {
    /// image_id -> (label, predicted)
    predictions: HashMap<String, (Option<String>, String)>,
    /// (image_id, method) -> [mass_background, mass_border, flagged, agreement]
    metrics: HashMap<(String, String), [Option<f64>; 4]>,
    /// The run's verdict (migration 0006), when its shortcut check ran: confirmed shortcut regions per
    /// class, the share of its images flagged by trusted methods, and whether it is inconclusive.
    verdict: Option<(BTreeMap<String, usize>, f64, bool)>,
}

fn load(conn: &Connection, run: &str) -> rusqlite::Result<RunData> {
    let predictions = conn
        .prepare(
            "SELECT p.image_id, i.label, p.predicted FROM predictions AS p JOIN images AS i USING (image_id)
             WHERE p.run_id = ?1",
        )?
        .query_map([run], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
        .collect::<rusqlite::Result<_>>()?;
    let metrics = conn
        .prepare(
            "SELECT v.image_id, v.method, v.mass_background, v.mass_border, v.flagged, a.mean_spearman
             FROM v_image_method AS v
             LEFT JOIN v_method_agreement AS a USING (run_id, image_id, method)
             WHERE v.run_id = ?1",
        )?
        .query_map([run], |r| {
            Ok((
                (r.get(0)?, r.get(1)?),
                [
                    r.get(2)?,
                    r.get(3)?,
                    r.get::<_, Option<i64>>(4)?.map(|f| f as f64),
                    r.get(5)?,
                ],
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let flagged_share: Option<(f64, String)> = conn
        .query_row(
            "SELECT coalesce(flagged_share, 0), verdict FROM v_verdict WHERE run_id = ?1",
            [run],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let verdict = match flagged_share {
        Some((share, state)) => {
            // Place-based regions by their class, acquisition findings by the class they push toward.
            let mut confirmed: BTreeMap<String, usize> = conn
                .prepare(
                    "SELECT class, sum(n) FROM (
                       SELECT class, count(*) AS n FROM shortcut_regions
                       WHERE run_id = ?1 AND verdict = 'confirmed' GROUP BY class
                       UNION ALL
                       SELECT to_class, count(*) FROM acquisition_tests
                       WHERE run_id = ?1 AND verdict = 'confirmed' GROUP BY to_class)
                     GROUP BY class",
                )?
                .query_map([run], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)))?
                .collect::<rusqlite::Result<_>>()?;
            // A class without a confirmed region counts 0, so a region appearing in B is a delta.
            for class in classes_of(&predictions) {
                confirmed.entry(class).or_insert(0);
            }
            Some((confirmed, share, state == "inconclusive"))
        }
        None => None,
    };
    Ok(RunData {
        predictions,
        metrics,
        verdict,
    })
}

fn classes_of(predictions: &HashMap<String, (Option<String>, String)>) -> BTreeSet<String> {
    predictions
        .values()
        .flat_map(|(l, p)| l.iter().cloned().chain([p.clone()]))
        .collect()
}

/// The metrics a diff compares; accuracy, precision, recall and f1 are in percent, the rest are the
/// stored fractions / correlations.
const METHOD_METRICS: [&str; 4] = [
    "mass_background",
    "mass_border",
    "share_flagged",
    "agreement",
];
const CLASS_METRICS: [&str; 3] = ["precision", "recall", "f1"];
/// From the run's verdict (whole run, not only the common images): `shortcuts` = confirmed shortcut
/// regions and confirmed acquisition findings (scope "" = all, or a class: a region's class, the class
/// an acquisition finding pushes toward), `flagged_share` = % of images flagged by trusted methods,
/// `inconclusive` = 1 when the verdict is inconclusive, else 0 (`inconclusive up 0` fails a nightly
/// whose verdict became inconclusive).
const VERDICT_METRICS: [&str; 3] = ["shortcuts", "flagged_share", "inconclusive"];

/// One compared figure: (metric, scope) -> value; scope is "" for run-wide, a class or a method.
type Figures = BTreeMap<(String, String), f64>;

fn figures(d: &RunData, common: &BTreeSet<&String>) -> Figures {
    let mut f = Figures::new();
    let labelled: Vec<(&String, &String)> = d
        .predictions
        .iter()
        .filter(|(id, _)| common.contains(id))
        .filter_map(|(_, (l, p))| l.as_ref().map(|l| (l, p)))
        .collect();
    if !labelled.is_empty() {
        let right = labelled.iter().filter(|(l, p)| l == p).count();
        f.insert(
            ("accuracy".into(), String::new()),
            100.0 * right as f64 / labelled.len() as f64,
        );
        let classes: BTreeSet<&String> = labelled.iter().flat_map(|(l, p)| [*l, *p]).collect();
        for c in classes {
            let tp = labelled.iter().filter(|(l, p)| l == &c && p == &c).count() as f64;
            let predicted = labelled.iter().filter(|(_, p)| p == &c).count() as f64;
            let actual = labelled.iter().filter(|(l, _)| l == &c).count() as f64;
            let precision = if predicted > 0.0 { tp / predicted } else { 0.0 };
            let recall = if actual > 0.0 { tp / actual } else { 0.0 };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            for (name, v) in CLASS_METRICS.iter().zip([precision, recall, f1]) {
                f.insert((name.to_string(), c.clone()), 100.0 * v);
            }
        }
    }
    let mut sums: BTreeMap<(usize, &String), (f64, usize)> = BTreeMap::new();
    for ((id, method), vals) in &d.metrics {
        if !common.contains(id) {
            continue;
        }
        for (i, v) in vals.iter().enumerate() {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                let e = sums.entry((i, method)).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
    }
    for ((i, method), (s, n)) in sums {
        f.insert(
            (METHOD_METRICS[i].to_string(), method.clone()),
            s / n as f64,
        );
    }
    if let Some((confirmed, share, inconclusive)) = &d.verdict {
        f.insert(
            ("inconclusive".into(), String::new()),
            if *inconclusive { 1.0 } else { 0.0 },
        );
        f.insert(
            ("shortcuts".into(), String::new()),
            confirmed.values().sum::<usize>() as f64,
        );
        for (class, n) in confirmed {
            f.insert(("shortcuts".into(), class.clone()), *n as f64);
        }
        f.insert(("flagged_share".into(), String::new()), 100.0 * share);
    }
    f
}

/// The result of a diff: the table and which rules fired.
pub struct Diff {
    pub table: Table,
    pub common_images: usize,
    pub only_a: usize,
    pub only_b: usize,
    pub violations: Vec<String>,
}

/// Compares run `a` (in `conn_a`) with run `b` (in `conn_b`) on their common images.
pub fn diff(
    conn_a: &Connection,
    a: &str,
    conn_b: &Connection,
    b: &str,
    rules: &[Rule],
) -> Result<Diff, QueryError> {
    let (da, db) = (load(conn_a, a)?, load(conn_b, b)?);
    let ids_a: BTreeSet<&String> = da.predictions.keys().collect();
    let ids_b: BTreeSet<&String> = db.predictions.keys().collect();
    let common: BTreeSet<&String> = ids_a.intersection(&ids_b).copied().collect();
    if common.is_empty() {
        return Err(QueryError::NoCommonImages {
            a: a.to_string(),
            b: b.to_string(),
        });
    }
    let (fa, fb) = (figures(&da, &common), figures(&db, &common));
    let keys: BTreeSet<&(String, String)> = fa.keys().chain(fb.keys()).collect();
    let order = |m: &str| {
        ["accuracy"]
            .iter()
            .chain(&CLASS_METRICS)
            .chain(&METHOD_METRICS)
            .chain(&VERDICT_METRICS)
            .position(|x| *x == m)
            .unwrap_or(usize::MAX)
    };
    let mut keys: Vec<&(String, String)> = keys.into_iter().collect();
    keys.sort_by_key(|(m, s)| (order(m), s.clone()));
    let mut table = Table::new(["metric", "scope", "a", "b", "delta", "rule"]);
    let mut violations = Vec::new();
    for (metric, scope) in keys {
        let va = fa.get(&(metric.clone(), scope.clone())).copied();
        let vb = fb.get(&(metric.clone(), scope.clone())).copied();
        let delta = va.zip(vb).map(|(x, y)| y - x);
        let fired: Vec<&Rule> = rules
            .iter()
            .filter(|r| delta.is_some_and(|d| r.fires(metric, scope, d)))
            .collect();
        for r in &fired {
            violations.push(format!(
                "{metric}{} went from {:.4} to {:.4} (delta {:+.4}): rule \"{r}\"",
                if scope.is_empty() {
                    String::new()
                } else {
                    format!(" @ {scope}")
                },
                va.unwrap_or(f64::NAN),
                vb.unwrap_or(f64::NAN),
                delta.unwrap_or(f64::NAN)
            ));
        }
        table.push(vec![
            Cell::text(metric.clone()),
            Cell::text(scope.clone()),
            Cell::opt_real(va),
            Cell::opt_real(vb),
            Cell::opt_real(delta),
            if fired.is_empty() {
                Cell::Null
            } else {
                Cell::text(
                    fired
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            },
        ]);
    }
    Ok(Diff {
        table,
        common_images: common.len(),
        only_a: ids_a.len() - common.len(),
        only_b: ids_b.len() - common.len(),
        violations,
    })
}

/// A `--fail-on` rule: `METRIC[@SCOPE] up|down THRESHOLD`, e.g. `accuracy down 1` (percentage
/// points) or `mass_background@any up 0.05`; it fires when B - A moves past the threshold in that
/// direction (strictly). SCOPE is a method or class name, or `any` (the default).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub metric: String,
    pub scope: Option<String>,
    pub up: bool,
    pub threshold: f64,
}

impl Rule {
    fn fires(&self, metric: &str, scope: &str, delta: f64) -> bool {
        self.metric == metric
            && self.scope.as_deref().is_none_or(|s| s == scope)
            && if self.up {
                delta > self.threshold
            } else {
                -delta > self.threshold
            }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{} {} {}",
            self.metric,
            self.scope.as_deref().unwrap_or("any"),
            if self.up { "up" } else { "down" },
            self.threshold
        )
    }
}

impl FromStr for Rule {
    type Err = String;
    fn from_str(s: &str) -> Result<Rule, String> {
        let all: Vec<&str> = ["accuracy"]
            .iter()
            .chain(&CLASS_METRICS)
            .chain(&METHOD_METRICS)
            .chain(&VERDICT_METRICS)
            .copied()
            .collect();
        let usage = format!(
            "a rule is `METRIC[@SCOPE] up|down THRESHOLD`, e.g. \"accuracy down 1\" or \
             \"mass_background@any up 0.05\"; metrics: {}",
            all.join(", ")
        );
        let parts: Vec<&str> = s.split_whitespace().collect();
        let [target, dir, value] = parts.as_slice() else {
            return Err(format!("{s:?}: {usage}"));
        };
        let (metric, scope) = match target.split_once('@') {
            Some((m, sc)) => (m, (sc != "any").then(|| sc.to_string())),
            None => (*target, None),
        };
        if !all.contains(&metric) {
            return Err(format!("{s:?}: unknown metric {metric:?}; {usage}"));
        }
        let up = match *dir {
            "up" => true,
            "down" => false,
            other => {
                return Err(format!(
                    "{s:?}: direction must be up or down, found {other:?}"
                ))
            }
        };
        let threshold: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{s:?}: threshold must be a number >= 0, found {value:?}"))?;
        Ok(Rule {
            metric: metric.to_string(),
            scope,
            up,
            threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_fire() {
        let r: Rule = "mass_background@any up 0.05".parse().unwrap();
        assert!(r.fires("mass_background", "gradcam", 0.051));
        assert!(
            !r.fires("mass_background", "gradcam", 0.05),
            "strictly past the threshold"
        );
        assert!(!r.fires("mass_background", "gradcam", -0.2));
        assert!(!r.fires("mass_border", "gradcam", 0.2));
        let r: Rule = "accuracy down 1".parse().unwrap();
        assert!(r.fires("accuracy", "", -1.5));
        assert!(!r.fires("accuracy", "", -0.5));
        assert!(!r.fires("accuracy", "", 3.0));
        let r: Rule = "recall@yes down 2".parse().unwrap();
        assert!(r.fires("recall", "yes", -2.5));
        assert!(!r.fires("recall", "no", -2.5));
        // One more confirmed shortcut region than last night fires; as many does not.
        let r: Rule = "shortcuts up 0".parse().unwrap();
        assert!(r.fires("shortcuts", "", 1.0) && r.fires("shortcuts", "yes", 1.0));
        assert!(!r.fires("shortcuts", "", 0.0));
        let r: Rule = "flagged_share up 5".parse().unwrap();
        assert!(r.fires("flagged_share", "", 6.0) && !r.fires("flagged_share", "", 4.0));
        // A verdict that became inconclusive fails the gate; one that stayed so does not.
        let r: Rule = "inconclusive up 0".parse().unwrap();
        assert!(r.fires("inconclusive", "", 1.0) && !r.fires("inconclusive", "", 0.0));
    }

    #[test]
    fn bad_rules_say_why() {
        for (s, want) in [
            ("accuracy down", "a rule is"),
            ("acuracy down 1", "unknown metric"),
            ("accuracy sideways 1", "up or down"),
            ("accuracy down -1", ">= 0"),
            ("accuracy down x", ">= 0"),
        ] {
            let e = s.parse::<Rule>().unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
