//! Bias summaries (the notebook's section 3, for a whole run): per class x correctness x method, where
//! the maps put their mass, and the mean attribution map per class x method as pictures.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use rusqlite::Connection;

use super::table::{Cell, Table};
use super::QueryError;
use crate::display;
use crate::metrics::{abs_shares, mean, median};
use crate::store::maps;

/// One group's values, kept whole for medians.
#[derive(Default)]
struct Group {
    background: Vec<f64>,
    border: Vec<f64>,
    flagged: Vec<f64>,
    agreement: Vec<f64>,
}

/// Key: (label, correct, method); label "" = unlabelled, correct None = unknown.
pub(crate) type Key = (String, Option<i64>, String);

fn groups(conn: &Connection, run: &str) -> rusqlite::Result<BTreeMap<Key, Group>> {
    let mut out: BTreeMap<Key, Group> = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT coalesce(v.label, ''), v.correct, v.method, v.mass_background, v.mass_border, v.flagged,
                a.mean_spearman
         FROM v_image_method AS v
         LEFT JOIN v_method_agreement AS a USING (run_id, image_id, method)
         WHERE v.run_id = ?1",
    )?;
    let mut rows = stmt.query([run])?;
    while let Some(r) = rows.next()? {
        let g = out.entry((r.get(0)?, r.get(1)?, r.get(2)?)).or_default();
        let push = |v: &mut Vec<f64>, x: Option<f64>| {
            if let Some(x) = x.filter(|x| x.is_finite()) {
                v.push(x)
            }
        };
        push(&mut g.background, r.get(3)?);
        push(&mut g.border, r.get(4)?);
        push(
            &mut g.flagged,
            r.get::<_, Option<i64>>(5)?.map(|f| f as f64),
        );
        push(&mut g.agreement, r.get(6)?);
    }
    Ok(out)
}

const LONG_COLUMNS: [&str; 11] = [
    "label",
    "correct",
    "method",
    "images",
    "mean_mass_background",
    "median_mass_background",
    "mean_mass_border",
    "median_mass_border",
    "share_flagged",
    "mean_agreement",
    "median_agreement",
];

/// Tidy bias summary: one row per class x correctness x method.
pub fn summary(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    let cells = |g: &Group| {
        vec![
            Cell::Int(g.flagged.len() as i64),
            Cell::opt_real(mean(&g.background)),
            Cell::opt_real(median(&g.background)),
            Cell::opt_real(mean(&g.border)),
            Cell::opt_real(median(&g.border)),
            Cell::opt_real(mean(&g.flagged)),
            Cell::opt_real(mean(&g.agreement)),
            Cell::opt_real(median(&g.agreement)),
        ]
    };
    Ok(long_table(groups(conn, run)?, &LONG_COLUMNS, cells))
}

/// One row per class x correctness x method of `all`: label, correct, method, then `cells`.
pub(crate) fn long_table<G>(
    all: BTreeMap<Key, G>,
    columns: &[&str],
    cells: impl Fn(&G) -> Vec<Cell>,
) -> Table {
    let mut t = Table::new(columns.iter().copied());
    for ((label, correct, method), g) in all {
        let mut row = vec![
            Cell::Text(label),
            correct.map_or(Cell::Null, Cell::Int),
            Cell::Text(method),
        ];
        row.extend(cells(&g));
        t.push(row);
    }
    t
}

/// Correct vs incorrect side by side: one row per class x method.
pub fn side_by_side(conn: &Connection, run: &str) -> rusqlite::Result<Table> {
    let columns = [
        "label",
        "method",
        "n_right",
        "bg_mean_right",
        "bg_median_right",
        "border_mean_right",
        "flagged_right",
        "n_wrong",
        "bg_mean_wrong",
        "bg_median_wrong",
        "border_mean_wrong",
        "flagged_wrong",
    ];
    let cells = |g: Option<&Group>| match g {
        Some(g) => vec![
            Cell::Int(g.flagged.len() as i64),
            Cell::opt_real(mean(&g.background)),
            Cell::opt_real(median(&g.background)),
            Cell::opt_real(mean(&g.border)),
            Cell::opt_real(mean(&g.flagged)),
        ],
        None => vec![Cell::Int(0), Cell::Null, Cell::Null, Cell::Null, Cell::Null],
    };
    Ok(right_wrong(&groups(conn, run)?, &columns, cells, |_, _| {
        Vec::new()
    }))
}

/// One row per class x method of `all`: label, method, `cells` of the correct predictions' group,
/// then of the incorrect ones' (`None` where there is none), then `extra` of both.
pub(crate) fn right_wrong<G>(
    all: &BTreeMap<Key, G>,
    columns: &[&str],
    cells: impl Fn(Option<&G>) -> Vec<Cell>,
    extra: impl Fn(Option<&G>, Option<&G>) -> Vec<Cell>,
) -> Table {
    // The map is ordered by (label, correct, method): sort before dedup, or a class with both right
    // and wrong predictions would get each method twice.
    let mut keys: Vec<(String, String)> =
        all.keys().map(|(l, _, m)| (l.clone(), m.clone())).collect();
    keys.sort();
    keys.dedup();
    let mut t = Table::new(columns.iter().copied());
    for (label, method) in keys {
        let get = |c: i64| all.get(&(label.clone(), Some(c), method.clone()));
        let mut row = vec![Cell::Text(label.clone()), Cell::Text(method.clone())];
        row.extend(cells(get(1)));
        row.extend(cells(get(0)));
        row.extend(extra(get(1), get(0)));
        t.push(row);
    }
    t
}

/// The mean attribution map of one class x method: each image's |map| is scaled to sum 1 (its
/// distribution of attribution mass), then averaged, so every image weighs the same.
pub struct MeanMap {
    pub label: String,
    pub method: String,
    pub images: usize,
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

/// Mean maps per label x method, plus label "all" per method; labels in class order, methods in
/// the run's order.
pub fn mean_maps(conn: &Connection, run: &str) -> rusqlite::Result<Vec<MeanMap>> {
    let mut acc: BTreeMap<(String, String), MeanMap> = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT coalesce(i.label, 'unlabelled'), m.method, m.width, m.height, m.encoding, m.data
         FROM maps AS m JOIN images AS i USING (image_id)
         WHERE m.run_id = ?1",
    )?;
    let mut rows = stmt.query([run])?;
    while let Some(r) = rows.next()? {
        let (label, method): (String, String) = (r.get(0)?, r.get(1)?);
        let (w, h): (i64, i64) = (r.get(2)?, r.get(3)?);
        let encoding: String = r.get(4)?;
        let Some(values) = maps::decode(&encoding, r.get_ref(5)?.as_blob()?) else {
            continue;
        };
        let Some(shares) = abs_shares(&values) else {
            continue;
        };
        for key in [
            (label.clone(), method.clone()),
            ("all".to_string(), method.clone()),
        ] {
            let m = acc.entry(key.clone()).or_insert_with(|| MeanMap {
                label: key.0.clone(),
                method: key.1.clone(),
                images: 0,
                width: w as usize,
                height: h as usize,
                values: vec![0.0; (w * h) as usize],
            });
            if m.values.len() != values.len() {
                continue;
            }
            m.images += 1;
            for (a, share) in m.values.iter_mut().zip(&shares) {
                *a += *share as f32;
            }
        }
    }
    let methods: Vec<String> = conn
        .query_row("SELECT methods FROM runs WHERE run_id = ?1", [run], |r| {
            r.get::<_, String>(0)
        })
        .ok()
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default();
    let order = |m: &str| methods.iter().position(|x| x == m).unwrap_or(usize::MAX);
    let mut out: Vec<MeanMap> = acc
        .into_values()
        .map(|mut m| {
            let n = m.images.max(1) as f32;
            m.values.iter_mut().for_each(|v| *v /= n);
            m
        })
        .collect();
    out.sort_by(|a, b| {
        (a.label == "all", &a.label, order(&a.method)).cmp(&(
            b.label == "all",
            &b.label,
            order(&b.method),
        ))
    });
    Ok(out)
}

/// A mean map as a picture: jet colours scaled to the map's own maximum, upscaled to `size`.
pub fn render(map: &MeanMap, size: u32) -> RgbImage {
    let max = map.values.iter().cloned().fold(0f32, f32::max);
    let (w, h) = (map.width as u32, map.height as u32);
    let small = RgbImage::from_fn(w, h, |x, y| {
        let v = map.values[(y * w + x) as usize];
        image::Rgb(display::jet(if max > 0.0 { v / max } else { 0.0 }))
    });
    display::upscale(&small, (size / w.max(1)).max(1))
}

/// The colour bar of the mean maps: each tile scaled to its own maximum.
pub fn mean_map_colorbar() -> display::ColorBar {
    display::ColorBar {
        params: display::DisplayParams::default(),
        ticks: vec![(0.0, "0".into()), (0.5, "0.5".into()), (1.0, "1".into())],
        caption: MEAN_MAP_SCALE.into(),
    }
}

/// What the colours of a mean map mean.
pub const MEAN_MAP_SCALE: &str = "Colour = the class's mean share of |attribution| per pixel, as a \
     share of that map's own maximum: 0 = none, 1 = the map's hottest pixel (blue = little, red = much).";

/// Writes one PNG per class x method (`<label>__<method>.png`) and a grid `mean-maps.png` (rows =
/// classes then "all", columns = methods) into `dir`. Returns the grid's path.
pub fn write_mean_maps(maps: &[MeanMap], dir: &Path) -> Result<PathBuf, QueryError> {
    std::fs::create_dir_all(dir).map_err(|e| QueryError::file("create", dir, e))?;
    let mut labels: Vec<String> = Vec::new();
    let mut methods: Vec<String> = Vec::new();
    for m in maps {
        if !labels.contains(&m.label) {
            labels.push(m.label.clone());
        }
        if !methods.contains(&m.method) {
            methods.push(m.method.clone());
        }
        let path = dir.join(format!(
            "{}__{}.png",
            file_safe(&m.label),
            file_safe(&m.method)
        ));
        render(m, 192)
            .save(&path)
            .map_err(|e| QueryError::file("write", &path, e))?;
    }
    let rows: Vec<Vec<RgbImage>> = labels
        .iter()
        .map(|l| {
            methods
                .iter()
                .map(|me| {
                    maps.iter()
                        .find(|m| &m.label == l && &m.method == me)
                        .map(|m| render(m, 128))
                        .unwrap_or_else(|| {
                            RgbImage::from_pixel(128, 128, image::Rgb([255, 255, 255]))
                        })
                })
                .collect()
        })
        .collect();
    let row_labels: Vec<String> = labels
        .iter()
        .map(|l| {
            let n = maps.iter().find(|m| &m.label == l).map_or(0, |m| m.images);
            format!("{l} n={n}")
        })
        .collect();
    let col_labels: Vec<display::Caption> = methods
        .iter()
        .map(|m| {
            crate::attribution::Method::parse(m)
                .map_or(m.clone(), |m| m.short().to_string())
                .into()
        })
        .collect();
    let grid = display::montage(&rows, &row_labels, &col_labels);
    let bar = mean_map_colorbar().draw(grid.width().min(520));
    let grid = display::stack(&[grid, bar]);
    let path = dir.join("mean-maps.png");
    grid.save(&path)
        .map_err(|e| QueryError::file("write", &path, e))?;
    Ok(path)
}

/// A name made safe for a file name: anything but ASCII letters, digits, `-`, `_` and `.` becomes `_`.
pub fn file_safe(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() || t.starts_with('.') {
        format!("_{t}")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_safe("no"), "no");
        assert_eq!(file_safe("a/b c"), "a_b_c");
        assert_eq!(file_safe("../x"), "_.._x");
        assert_eq!(file_safe("<img src=x>"), "_img_src_x_");
    }
}
