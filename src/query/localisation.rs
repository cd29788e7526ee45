//! The localisation figures of a run (images with a ground-truth outline, `data.masks`): per class x
//! correctness x method, how much of the maps' mass lies on the tumour and how often their maximum
//! does, and the run's one line for the verdict section.
use std::collections::BTreeMap;

use rusqlite::Connection;

use super::bias::{long_table, right_wrong, Key};
use super::table::{Cell, Table};
use crate::metrics::{mean, median};

/// One image x method.
struct Row {
    label: String,
    correct: Option<i64>,
    method: String,
    area: f64,
    mass: f64,
    hit: f64,
    energy: f64,
    iou: f64,
}

fn rows(conn: &Connection, run: &str) -> rusqlite::Result<Vec<Row>> {
    let mut st = conn.prepare(
        "SELECT coalesce(label, ''), correct, method, outline_area, mass_on_tumor, pointing_hit,
                energy_pointing, iou_top_area
         FROM v_localisation WHERE run_id = ?1",
    )?;
    let out = st
        .query_map([run], |r| {
            let f = |i: usize| r.get::<_, Option<f64>>(i).map(|v| v.unwrap_or(f64::NAN));
            Ok(Row {
                label: r.get(0)?,
                correct: r.get(1)?,
                method: r.get(2)?,
                area: f(3)?,
                mass: f(4)?,
                hit: r.get::<_, i64>(5)? as f64,
                energy: f(6)?,
                iou: f(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(out)
}

/// Whether the run has any localisation figure.
pub fn has_figures(conn: &Connection, run: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM localisation WHERE run_id = ?1)",
        [run],
        |r| r.get(0),
    )
}

/// The values of one group, kept whole for medians.
#[derive(Default)]
struct Group {
    area: Vec<f64>,
    mass: Vec<f64>,
    hit: Vec<f64>,
    energy: Vec<f64>,
    iou: Vec<f64>,
}

impl Group {
    fn add(&mut self, r: &Row) {
        let push = |v: &mut Vec<f64>, x: f64| {
            if x.is_finite() {
                v.push(x)
            }
        };
        push(&mut self.area, r.area);
        push(&mut self.mass, r.mass);
        push(&mut self.hit, r.hit);
        push(&mut self.energy, r.energy);
        push(&mut self.iou, r.iou);
    }

    fn images(&self) -> usize {
        self.hit.len()
    }
}

fn groups(conn: &Connection, run: &str) -> rusqlite::Result<BTreeMap<Key, Group>> {
    let mut out: BTreeMap<Key, Group> = BTreeMap::new();
    for r in rows(conn, run)? {
        out.entry((r.label.clone(), r.correct, r.method.clone()))
            .or_default()
            .add(&r);
    }
    Ok(out)
}

/// Tidy summary: one row per class x correctness x method (images with an outline only).
pub fn summary(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    let columns = [
        "label",
        "correct",
        "method",
        "images",
        "median_outline_area",
        "mean_mass_on_tumor",
        "median_mass_on_tumor",
        "pointing_rate",
        "mean_energy_pointing",
        "mean_iou_top_area",
    ];
    let cells = |g: &Group| {
        vec![
            Cell::Int(g.images() as i64),
            Cell::opt_real(median(&g.area)),
            Cell::opt_real(mean(&g.mass)),
            Cell::opt_real(median(&g.mass)),
            Cell::opt_real(mean(&g.hit)),
            Cell::opt_real(mean(&g.energy)),
            Cell::opt_real(mean(&g.iou)),
        ]
    };
    Ok(long_table(groups(conn, run)?, &columns, cells))
}

/// Correct vs incorrect side by side: one row per class x method.
pub fn side_by_side(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    let columns = [
        "label",
        "method",
        "n_right",
        "tumor_mass_right",
        "pointing_right",
        "iou_right",
        "n_wrong",
        "tumor_mass_wrong",
        "pointing_wrong",
        "iou_wrong",
        "outline_area",
    ];
    let cells = |g: Option<&Group>| match g {
        Some(g) => vec![
            Cell::Int(g.images() as i64),
            Cell::opt_real(median(&g.mass)),
            Cell::opt_real(mean(&g.hit)),
            Cell::opt_real(mean(&g.iou)),
        ],
        None => vec![Cell::Int(0), Cell::Null, Cell::Null, Cell::Null],
    };
    let area = |a: Option<&Group>, b: Option<&Group>| {
        let all: Vec<f64> = [a, b]
            .into_iter()
            .flatten()
            .flat_map(|g| g.area.clone())
            .collect();
        vec![Cell::opt_real(median(&all))]
    };
    Ok(right_wrong(&groups(conn, run)?, &columns, cells, area))
}

/// The run's localisation in one line's figures (images with an outline only).
#[derive(Debug, Clone, PartialEq)]
pub struct RunLocalisation {
    /// Images with an outline.
    pub images: usize,
    /// The methods the figures are over: the trusted ones (shortcut check), or every method when the
    /// run has no trusted method or no shortcut check (`trusted` says which).
    pub methods: Vec<String>,
    pub trusted: bool,
    /// Median share of |map| on the tumour over those methods' maps.
    pub median_mass: f64,
    /// Median outline area share: the mass a map spread evenly would put on the tumour.
    pub median_area: f64,
    /// Share of those maps whose maximum is on the tumour.
    pub pointing_rate: f64,
    /// The same three for correct and for incorrect predictions: (maps, median mass, pointing rate).
    pub correct: Option<(usize, f64, f64)>,
    pub wrong: Option<(usize, f64, f64)>,
}

impl RunLocalisation {
    /// The verdict section's line.
    pub fn line(&self) -> String {
        let pct = |x: f64| format!("{:.1}%", 100.0 * x);
        let who = if self.trusted {
            "trusted methods"
        } else {
            "all methods (none is marked trusted)"
        };
        let mut s = format!(
            "on images with an outline ({}), {who} put a median {} of their mass on the tumour \
             (chance: the outline's area share {}); pointing game hits {}",
            self.images,
            pct(self.median_mass),
            pct(self.median_area),
            pct(self.pointing_rate)
        );
        let part = |name: &str, v: &Option<(usize, f64, f64)>| {
            v.map(|(n, m, p)| {
                format!(
                    "{name}: {} on the tumour, {} hits ({n} maps)",
                    pct(m),
                    pct(p)
                )
            })
        };
        let parts: Vec<String> = [
            part("correct", &self.correct),
            part("incorrect", &self.wrong),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !parts.is_empty() {
            s += &format!(" [{}]", parts.join("; "));
        }
        s
    }
}

/// The run's line, or `None` when it has no localisation figure.
pub fn run_line(conn: &Connection, run: &str) -> rusqlite::Result<Option<RunLocalisation>> {
    let all = rows(conn, run)?;
    if all.is_empty() {
        return Ok(None);
    }
    let mut st = conn.prepare(
        "SELECT method FROM shortcut_methods WHERE run_id = ?1 AND trusted = 1 ORDER BY method",
    )?;
    let trusted: Vec<String> = st
        .query_map([run], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let picked: Vec<&Row> = all.iter().filter(|r| trusted.contains(&r.method)).collect();
    let (picked, is_trusted) = if picked.is_empty() {
        (all.iter().collect::<Vec<_>>(), false)
    } else {
        (picked, true)
    };
    let mut methods: Vec<String> = picked.iter().map(|r| r.method.clone()).collect();
    methods.sort();
    methods.dedup();
    let figures = |rows: &[&Row]| -> Option<(usize, f64, f64)> {
        let mut g = Group::default();
        rows.iter().for_each(|r| g.add(r));
        Some((g.images(), median(&g.mass)?, mean(&g.hit)?))
    };
    let which = |c: i64| -> Vec<&Row> {
        picked
            .iter()
            .copied()
            .filter(|r| r.correct == Some(c))
            .collect()
    };
    let Some((_, median_mass, pointing_rate)) = figures(&picked) else {
        return Ok(None);
    };
    // The outline's area once per image (the rows repeat it per method).
    let images: i64 = conn.query_row(
        "SELECT count(*) FROM outlines WHERE run_id = ?1",
        [run],
        |r| r.get(0),
    )?;
    let mut st = conn.prepare("SELECT area_fraction FROM outlines WHERE run_id = ?1")?;
    let areas: Vec<f64> = st
        .query_map([run], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(RunLocalisation {
        images: images as usize,
        methods,
        trusted: is_trusted,
        median_mass,
        median_area: median(&areas).unwrap_or(f64::NAN),
        pointing_rate,
        correct: figures(&which(1)),
        wrong: figures(&which(0)),
    }))
}
