//! The report's pages: the minijinja environment (templates embedded at build time, HTML
//! auto-escaping, undefined values refused) and the rendering of `report.html` and `gallery-N.html`.
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::view::{Common, GalleryGroup, IndexPage, PageLink};
use super::ReportError;

fn ser<T: Serialize>(x: &T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(x))
}

pub fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("base.html", include_str!("templates/base.html"))
        .expect("base.html template");
    env.add_template("report.html", include_str!("templates/report.html"))
        .expect("report.html template");
    env.add_template("gallery.html", include_str!("templates/gallery.html"))
        .expect("gallery.html template");
    env.add_template("pager", include_str!("templates/pager.html"))
        .expect("pager template");
    env
}

/// The file of gallery page `p` (1-based): page 1 is `report.html` itself.
pub fn page_file(p: usize) -> String {
    if p == 1 {
        "report.html".to_string()
    } else {
        format!("gallery-{p}.html")
    }
}

fn page_links(pages: usize, current: usize) -> Vec<PageLink> {
    (1..=pages)
        .map(|p| PageLink {
            number: p,
            href: page_file(p),
            current: p == current,
        })
        .collect()
}

/// Writes `report.html` (the index with the first gallery page) and one `gallery-N.html` per further
/// page of `paged` into `dir`. Returns the pages written, `report.html` first.
pub fn write_pages(
    dir: &Path,
    common: &Common<'_>,
    index: &IndexPage,
    paged: Vec<Vec<GalleryGroup>>,
) -> Result<Vec<PathBuf>, ReportError> {
    let env = environment();
    let common = ser(common);
    let pages = paged.len().max(1);
    let mut written = Vec::new();
    let mut paged = paged.into_iter();
    let first_groups = paged.next().unwrap_or_default();
    let html = env
        .get_template("report.html")?
        .render(minijinja::value::merge_maps([
            minijinja::context! {
                page => 1,
                page_links => ser(&page_links(pages, 1)),
                groups => ser(&first_groups),
            },
            ser(index),
            common.clone(),
        ]))?;
    let path = dir.join(page_file(1));
    std::fs::write(&path, &html).map_err(|e| ReportError::io("write", &path, e))?;
    written.push(path);
    for (k, groups) in paged.enumerate() {
        let p = k + 2;
        let html = env
            .get_template("gallery.html")?
            .render(minijinja::context! {
                page => p,
                page_links => ser(&page_links(pages, p)),
                groups => ser(&groups),
                ..common.clone()
            })?;
        let path = dir.join(page_file(p));
        std::fs::write(&path, &html).map_err(|e| ReportError::io("write", &path, e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_escape_data() {
        let env = environment();
        let t = env.template_from_str("<p>{{ x }}</p>").expect("template");
        let out = t
            .render(minijinja::context! { x => "<img src=x onerror=alert(1)>" })
            .unwrap();
        assert_eq!(out, "<p>&lt;img src=x onerror=alert(1)&gt;</p>");
    }
}
