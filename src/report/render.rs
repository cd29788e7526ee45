//! The report's pages: the minijinja environment (templates embedded at build time, HTML
//! auto-escaping, undefined values refused) and the rendering of `report.html`, `gallery-N.html`,
//! the gallery's other views (`views/`) and one page per image (`images/`). Every link in a template
//! is relative to the report folder and prefixed with `root` (`""` or `"../"`).
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::sections::{self, page_file, View};
use super::view::{Common, GalleryGroup, GalleryItem, ImagePage, IndexPage, PageLink, ViewNav};
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
    env.add_template(
        "gallery-section",
        include_str!("templates/gallery_section.html"),
    )
    .expect("gallery section template");
    env.add_template("image.html", include_str!("templates/image.html"))
        .expect("image.html template");
    env
}

fn page_links(pages: usize, current: usize, href: impl Fn(usize) -> String) -> Vec<PageLink> {
    (1..=pages)
        .map(|p| PageLink {
            number: p,
            href: href(p),
            current: p == current,
        })
        .collect()
}

/// Writes one page and adds it to the pages `written`.
fn write(path: PathBuf, html: &str, written: &mut Vec<PathBuf>) -> Result<(), ReportError> {
    std::fs::write(&path, html).map_err(|e| ReportError::io("write", &path, e))?;
    written.push(path);
    Ok(())
}

/// Writes `report.html` (the index with the first gallery page) and one `gallery-N.html` per further
/// page of `paged` into `dir`, each with the view bar `nav`. Returns the pages written, `report.html`
/// first.
pub fn write_pages(
    dir: &Path,
    common: &Common<'_>,
    index: &IndexPage,
    paged: Vec<Vec<GalleryGroup>>,
    nav: &ViewNav,
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
                root => "",
                nav => ser(nav),
                page_links => ser(&page_links(pages, 1, page_file)),
                groups => ser(&first_groups),
            },
            ser(index),
            common.clone(),
        ]))?;
    let path = dir.join(page_file(1));
    write(path, &html, &mut written)?;
    for (k, groups) in paged.enumerate() {
        let p = k + 2;
        let html = env
            .get_template("gallery.html")?
            .render(minijinja::context! {
                page => p,
                root => "",
                nav => ser(nav),
                page_links => ser(&page_links(pages, p, page_file)),
                groups => ser(&groups),
                ..common.clone()
            })?;
        let path = dir.join(page_file(p));
        write(path, &html, &mut written)?;
    }
    Ok(written)
}

/// Writes every view of the gallery but the main one (every image, most suspicious first, which
/// `write_pages` wrote) into `dir/views/`, in every order. Returns the pages written.
pub fn write_views(
    dir: &Path,
    common: &Common<'_>,
    items: &[GalleryItem],
    views: &[View],
    per_page: usize,
) -> Result<Vec<PathBuf>, ReportError> {
    let env = environment();
    let common = ser(common);
    let views_dir = dir.join("views");
    std::fs::create_dir_all(&views_dir).map_err(|e| ReportError::io("create", &views_dir, e))?;
    let mut written = Vec::new();
    // A view without images has no pages: the view bar shows it greyed, without a link.
    for v in views.iter().filter(|v| !v.members.is_empty()) {
        let sorts = sections::sorts(items);
        for &(sort, _) in &sorts {
            if v.key == "all" && sort == sections::SORTS[0].0 {
                continue;
            }
            let chosen: Vec<GalleryItem> = sections::sorted(items, &v.members, sort)
                .into_iter()
                .map(|i| items[i].clone())
                .collect();
            let paged = sections::gallery_pages(chosen, per_page);
            let pages = paged.len();
            let nav = sections::view_nav(views, &v.key, sort, &sorts);
            for (k, groups) in paged.into_iter().enumerate() {
                let p = k + 1;
                let html = env
                    .get_template("gallery.html")?
                    .render(minijinja::context! {
                        page => p,
                        pages => pages,
                        root => "../",
                        nav => ser(&nav),
                        page_links => ser(&page_links(pages, p, |q| sections::view_file(&v.key, sort, q))),
                        groups => ser(&groups),
                        ..common.clone()
                    })?;
                let path = dir.join(sections::view_file(&v.key, sort, p));
                write(path, &html, &mut written)?;
            }
        }
    }
    Ok(written)
}

/// Writes one page per image into `dir/images/`. Returns the pages written.
pub fn write_image_pages(
    dir: &Path,
    common: &Common<'_>,
    pages: impl IntoIterator<Item = ImagePage>,
) -> Result<Vec<PathBuf>, ReportError> {
    let env = environment();
    let common = ser(common);
    let images_dir = dir.join("images");
    std::fs::create_dir_all(&images_dir).map_err(|e| ReportError::io("create", &images_dir, e))?;
    let template = env.get_template("image.html")?;
    let mut written = Vec::new();
    for page in pages {
        let path = dir.join(&page.item.page);
        let html = template.render(minijinja::context! {
            root => "../",
            p => ser(&page),
            ..common.clone()
        })?;
        write(path, &html, &mut written)?;
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
