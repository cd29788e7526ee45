//! `report`: the HTML report of a real audit (real Br35H images, the bundled model, cheap sample
//! counts), opened in headless Chromium: every section renders, no console error, no failed request,
//! no broken image (and a deliberately broken copy of the page is caught), and names taken from the
//! data (file names and class names that are HTML / script payloads) show as text and run nothing.
//!
//! The pictures a first-time reader sees are checked at 1280 px: colour bars (their pixels in the
//! screenshot), labels, links between the gallery, its views and the image pages, no cut header and no
//! section wider than the window. Screenshots of the overview, a gallery page and an image page are
//! kept for a person to look at. Without Chromium these tests fail (`make test` provides the pinned
//! headless one under .deps/chromium when none is found: scripts/setup-chromium.sh).
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::support::browser::{self, Browser};
use super::support::cli::{ok, run_cheap};
use super::support::images::{leaked_copy, real_set, test_and_training_set};
use super::support::pages::{probe, shots_dir, url};
use super::support::tempdir;

/// File names that are HTML / script payloads (no `/`: a file name cannot hold one).
const PAYLOAD_IMG: &str = "<img src=x onerror=alert(1)>.jpg";
const PAYLOAD_SCRIPT: &str = "\"><script>alert(1)<\\script>.jpg";
/// A class (folder) name that is a payload too.
const PAYLOAD_CLASS: &str = "<svg onload=alert(2)>";
const CLASSES: [&str; 2] = ["no", PAYLOAD_CLASS];

/// Section ids of report.html, each with its heading.
const SECTIONS: [(&str, &str); 11] = [
    ("summary", ""),
    ("run", "Run"),
    ("evaluation", "Evaluation"),
    ("bias", "Bias summary"),
    ("mean-maps", "Mean attribution maps"),
    ("mass", "Where the mass goes"),
    ("agreement", "Method agreement"),
    ("trust", "Trust checks"),
    ("leakage", "Leakage"),
    ("errors", "Errors"),
    ("gallery", "Gallery"),
];

struct Fixture {
    report: PathBuf,
    dir: PathBuf,
    stdout: String,
}

fn tool(root: &Path, args: &[&str]) -> std::process::Output {
    run_cheap(root, &CLASSES, args)
}

/// Two real test images per class (two of them renamed to payloads), one corrupt file (an errors
/// row), and a training folder holding a re-encoded copy of one test image (a leakage row); audited
/// once per test process, then reported with two images per gallery page (so pagination is used).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-fixture");
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("data");
        let [no, _] =
            test_and_training_set(&root, CLASSES, 2, 0, |class, i| match (i, class == "no") {
                (0, true) => Some(PAYLOAD_IMG.to_string()),
                (0, false) => Some(PAYLOAD_SCRIPT.to_string()),
                _ => None,
            });
        std::fs::write(
            root.join("Testing/no/<b>broken.jpg"),
            b"\xff\xd8 not a jpeg",
        )
        .unwrap();
        leaked_copy(&no[1], &root.join("Training/no/<i>leaked copy.png"));
        let db = base.join("audit.sqlite");
        // `COMMAND --db DB ARGS...` on the fixture's database.
        let run = |command: &str, args: &[&str]| {
            tool(
                &root,
                &[&[command, "--db", db.to_str().unwrap()], args].concat(),
            )
        };
        let out = run("audit", &["--run", "report-1", "--faithfulness"]);
        // Exit code 3: the run finished and one file failed (the corrupt one).
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A sanity check too, so the trust section has both plots.
        let out = run(
            "sanity",
            &[
                "--run",
                "report-1",
                "--images",
                "2",
                "--methods",
                "guided_backprop,gradient,gradcam",
            ],
        );
        ok(out);
        let dir = base.join("report");
        let out = run(
            "report",
            &["--out", dir.to_str().unwrap(), "--per-page", "1"],
        );
        let stdout = ok(out);
        Fixture {
            report: dir.join("report.html"),
            dir,
            stdout,
        }
    })
}

/// Section ids and headings, scripts and inline handlers, and the text of the file-name elements.
const PROBE: &str = r#"JSON.stringify({
    ids: Array.from(document.querySelectorAll('section[id]')).map(s => s.id),
    headings: Array.from(document.querySelectorAll('h2')).map(h => h.textContent.trim()),
    scripts: document.querySelectorAll('script').length,
    handlers: document.querySelectorAll('[onerror],[onload],[onclick],[onmouseover]').length,
    svg_elements: document.querySelectorAll('svg').length,
    files: Array.from(document.querySelectorAll('.file')).map(e => ({
        text: e.textContent, children: e.children.length })),
    labels: Array.from(document.querySelectorAll('.meta b')).map(e => e.textContent),
    error_cells: Array.from(document.querySelectorAll('#errors td')).map(e => e.textContent),
    images: document.images.length,
    lazy: Array.from(document.images).filter(i => i.loading === 'lazy').length,
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href')),
})"#;

#[test]
fn report_renders_in_chromium_without_console_errors_or_failed_requests() {
    let f = fixture();
    assert!(f.stdout.contains("report written to"), "{}", f.stdout);
    let html = std::fs::read_to_string(&f.report).unwrap();
    // Nothing from the network: every src / href is relative.
    for bad in [
        "http://",
        "https://",
        "src=\"//",
        "href=\"//",
        "@import",
        "url(",
    ] {
        assert!(!html.contains(bad), "{bad} in report.html");
    }
    // Pagination: 4 audited images, 1 per column and page.
    let pages: Vec<String> = std::fs::read_dir(&f.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gallery-") && n.ends_with(".html"))
        .collect();
    assert!(!pages.is_empty(), "gallery-2.html, ...: {pages:?}");
    // Asset names come from image ids (hex digests), never from paths or class names.
    let strips = f.dir.join("report-assets/strips");
    let names: Vec<String> = std::fs::read_dir(&strips)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "one strip per audited image: {names:?}");
    for n in &names {
        let stem = n.strip_suffix(".jpg").expect("a .jpg strip");
        assert!(
            stem.len() == 64 && stem.chars().all(|c| c.is_ascii_hexdigit()),
            "{n}"
        );
    }
    for entry in walk(&f.dir.join("report-assets")) {
        let n = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "asset name {n:?}"
        );
    }

    let bin = browser::require_chromium();
    let t0 = std::time::Instant::now();
    let mut b = Browser::launch(&bin);
    let v = b.visit(&url(&f.report), PROBE);
    assert!(v.is_clean(), "report.html in Chromium: {v:#?}");
    let p = probe(&v);
    let (ids, headings) = (strings(&p["ids"]), strings(&p["headings"]));
    for (id, heading) in SECTIONS {
        assert!(
            ids.iter().any(|i| i == id),
            "section #{id} missing: {ids:?}"
        );
        assert!(
            headings.iter().any(|h| h.starts_with(heading)),
            "heading {heading:?} missing: {headings:?}"
        );
    }
    // Every image of the page was requested and loaded (the gallery strips are lazy).
    assert!(p["images"].as_u64().unwrap() >= 15, "{p}");
    assert!(p["lazy"].as_u64().unwrap() >= 1, "{p}");
    let loaded_strips = v
        .requested
        .iter()
        .filter(|u| u.contains("report-assets/strips/"))
        .count();
    assert_eq!(
        loaded_strips,
        p["lazy"].as_u64().unwrap() as usize,
        "{v:#?}"
    );
    assert!(
        v.requested.iter().all(|u| u.starts_with("file://")),
        "{v:#?}"
    );
    // Every page of the gallery renders clean too.
    for k in 2..=pages.len() + 1 {
        let g = f.dir.join(format!("gallery-{k}.html"));
        let v = b.visit(&url(&g), PROBE);
        assert!(v.is_clean(), "gallery-{k}.html in Chromium: {v:#?}");
        let p = probe(&v);
        assert!(
            p["ids"].as_array().unwrap().contains(&"gallery".into()),
            "{p}"
        );
    }

    // Negative checks: the same harness catches a broken image link...
    let html_text = std::fs::read_to_string(&f.report).unwrap();
    let strip_ref = "report-assets&#x2f;strips&#x2f;";
    let broken_link = f.dir.join("zz-broken-link.html");
    assert!(
        html_text.contains(strip_ref),
        "strip links are escaped URLs"
    );
    std::fs::write(
        &broken_link,
        html_text.replacen(strip_ref, "report-assets&#x2f;strips&#x2f;missing-", 1),
    )
    .unwrap();
    let v = b.visit(&url(&broken_link), PROBE);
    assert_eq!(v.broken_images.len(), 1, "{v:#?}");
    assert!(
        v.failed_requests.iter().any(|r| r.contains("missing-")),
        "a missing file is a failed request: {v:#?}"
    );
    assert!(!v.is_clean());
    // ... and a console error (a page without the report's Content-Security-Policy, with a script).
    let broken_console = f.dir.join("zz-broken-console.html");
    let csp_start = html_text
        .find("<meta http-equiv=\"Content-Security-Policy\"")
        .unwrap();
    let csp_end = csp_start + html_text[csp_start..].find('>').unwrap() + 1;
    let mut planted = html_text.clone();
    planted.replace_range(csp_start..csp_end, "");
    let planted = planted.replacen(
        "</body>",
        "<script>console.error('planted error')</script></body>",
        1,
    );
    std::fs::write(&broken_console, planted).unwrap();
    let v = b.visit(&url(&broken_console), PROBE);
    assert!(
        v.console.iter().any(|c| c.contains("planted error")),
        "{v:#?}"
    );
    assert!(
        v.failed_requests.is_empty() && v.broken_images.is_empty(),
        "{v:#?}"
    );
    drop(b);

    // What a person sees: a screenshot of the top of the page that is not blank, and the DOM as
    // `chromium --dump-dom` prints it holds every section.
    let shot = shots_dir().join("report-top.png");
    browser::screenshot(&bin, &url(&f.report), &shot, 1400, 4000);
    let img = image::open(&shot).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1400, 4000));
    let mut colours = std::collections::HashSet::new();
    let mut non_white = 0usize;
    for px in img.pixels() {
        colours.insert(px.0);
        non_white += (px.0 != [255, 255, 255]) as usize;
    }
    assert!(colours.len() > 200, "{} colours: blank?", colours.len());
    assert!(non_white > 100_000, "{non_white} non-white pixels: blank?");
    browser::screenshot(
        &bin,
        &url(&f.dir.join("gallery-2.html")),
        &shots_dir().join("gallery-2.png"),
        1400,
        1400,
    );
    let dom = browser::dump_dom(&bin, &url(&f.report));
    for (id, heading) in SECTIONS {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "#{id} not in the DOM"
        );
        assert!(dom.contains(heading), "{heading:?} not in the DOM");
    }
    // The trust section has its curves and tables (the fixture ran --faithfulness and `sanity`), and
    // the browser loaded both plots.
    for svg in ["faithfulness.svg", "sanity.svg"] {
        assert!(
            dom.contains(&format!("report-assets/{svg}")),
            "{svg} not in the DOM"
        );
    }
    assert!(
        !dom.contains("This run has no faithfulness curves") && !dom.contains("No sanity check")
    );
    println!(
        "browser checks {:.1} s; screenshots in {}",
        t0.elapsed().as_secs_f64(),
        shots_dir().display()
    );
}

#[test]
fn report_shows_payload_file_and_class_names_as_text() {
    let f = fixture();
    let mut pages = vec![f.report.clone()];
    let mut k = 2;
    while f.dir.join(format!("gallery-{k}.html")).is_file() {
        pages.push(f.dir.join(format!("gallery-{k}.html")));
        k += 1;
    }
    let html: String = pages
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    // Escaped in the source of every page: no raw payload anywhere, the escaped form where the names
    // are shown.
    for raw in [
        "<img src=x",
        "<script",
        "<svg onload",
        "<b>broken",
        "<i>leaked",
    ] {
        assert!(!html.contains(raw), "raw {raw:?} in report.html");
    }
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;.jpg"),
        "escaped file name"
    );
    assert!(
        html.contains("&quot;&gt;&lt;script&gt;alert(1)&lt;\\script&gt;.jpg"),
        "escaped file name"
    );
    assert!(
        html.contains("&lt;svg onload=alert(2)&gt;"),
        "escaped class"
    );
    let index = std::fs::read_to_string(&f.report).unwrap();
    assert!(index.contains("&lt;b&gt;broken.jpg"), "escaped errors row");
    assert!(
        index.contains("&lt;i&gt;leaked copy.png"),
        "escaped leakage row"
    );
    // The plots are SVG files shown through <img> (no script can run there), with escaped text.
    let svg = std::fs::read_to_string(f.dir.join("report-assets/confusion.svg")).unwrap();
    assert!(svg.contains("&lt;svg onload=alert(2)&gt;") && !svg.contains("<svg onload"));

    let bin = browser::require_chromium();
    let mut b = Browser::launch(&bin);
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for page in &pages {
        let v = b.visit(&url(page), PROBE);
        assert!(v.is_clean(), "{}: {v:#?}", page.display());
        assert!(v.dialogs.is_empty(), "an alert opened: {v:#?}");
        let p = probe(&v);
        assert_eq!(p["scripts"], 0, "{p}");
        assert_eq!(p["handlers"], 0, "{p}");
        assert_eq!(p["svg_elements"], 0, "{p}");
        for e in p["files"].as_array().unwrap() {
            assert_eq!(e["children"], 0, "a file name became markup: {e}");
            files.push(e["text"].as_str().unwrap().to_string());
        }
        labels.extend(
            p["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string()),
        );
        if page == &f.report {
            let cells: Vec<&str> = p["error_cells"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            assert!(
                cells.iter().any(|c| c.ends_with("<b>broken.jpg")),
                "{cells:?}"
            );
        }
    }
    // The names are text nodes with exactly the file's name.
    assert!(files.contains(&PAYLOAD_IMG.to_string()), "{files:?}");
    assert!(files.contains(&PAYLOAD_SCRIPT.to_string()), "{files:?}");
    assert!(labels.contains(&PAYLOAD_CLASS.to_string()), "{labels:?}");
}

/// What the 1280-px checks read from a page: overflow, cut headers, colour bars (with their place
/// on the page), links, labels, the image page's maps and matrices.
const LAYOUT_PROBE: &str = r#"JSON.stringify({
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    wide_sections: Array.from(document.querySelectorAll('main section'))
        .filter(s => s.scrollWidth > s.clientWidth + 1).map(s => s.id),
    cut: Array.from(document.querySelectorAll('.colhead div, th, nav.views a'))
        .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent),
    colorbars: Array.from(document.querySelectorAll('.colorbar')).map(c => {
        const i = c.querySelector('img'); const r = i.getBoundingClientRect();
        return { loaded: i.complete && i.naturalWidth === 256, x: r.left + window.scrollX,
                 y: r.top + window.scrollY, w: r.width, h: r.height,
                 ticks: Array.from(c.querySelectorAll('.ticks span')).map(t => t.textContent),
                 meaning: (c.querySelector('.meaning') || {}).textContent || '' }; }),
    files: Array.from(document.querySelectorAll('a.file')).map(a => a.getAttribute('href')),
    opens: Array.from(document.querySelectorAll('a.open')).map(a => a.getAttribute('href')),
    views: Array.from(document.querySelectorAll('nav.views a')).map(a => a.getAttribute('href')),
    pager: Array.from(document.querySelectorAll('.pager a')).map(a => ({ href: a.getAttribute('href'),
        rel: a.getAttribute('rel') || '' })),
    toc: Array.from(document.querySelectorAll('nav.toc a')).map(a => ({ href: a.getAttribute('href'),
        text: a.textContent, rel: a.getAttribute('rel') || '' })),
    tiles: Array.from(document.querySelectorAll('img.strip')).map(i => i.getBoundingClientRect().width),
    meta: Array.from(document.querySelectorAll('.meta')).map(m => m.textContent.replace(/\s+/g, ' ').trim()),
    groups: Array.from(document.querySelectorAll('.group > h3')).map(h => h.textContent),
    heat: Array.from(document.querySelectorAll('.ov img.heat')).map(i => ({
        loaded: i.complete && i.naturalWidth > 0, w: i.getBoundingClientRect().width })),
    maps: Array.from(document.querySelectorAll('figure.map h3')).map(h => h.textContent),
    figs: Array.from(document.querySelectorAll('table.figs')).map(t => t.textContent.replace(/\s+/g, ' ').trim()),
    matrices: document.querySelectorAll('table.matrix').length,
    original: Array.from(document.querySelectorAll('#input img')).map(i => ({
        loaded: i.complete && i.naturalWidth > 0, w: i.naturalWidth })),
})"#;

/// The file a relative link of `page` points at (the `#fragment` dropped).
fn target(page: &Path, href: &str) -> PathBuf {
    let file = href.split('#').next().unwrap();
    page.parent().unwrap().join(file)
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Every colour bar of a page was loaded and is seen in the screenshot: its left end is jet's dark
/// blue (0, 0, 127) and its right end jet's dark red (127, 0, 0), within what the browser's
/// smoothing of the 256 x 1 scale changes; it has tick labels and says what the scale means.
fn check_colour_bars(p: &serde_json::Value, shot: &Path, what: &str) -> usize {
    let img = image::open(shot).unwrap().to_rgb8();
    let bars = p["colorbars"].as_array().unwrap();
    for b in bars {
        assert_eq!(b["loaded"], true, "{what}: colour bar not loaded: {b}");
        assert!(b["ticks"].as_array().unwrap().len() >= 2, "{what}: {b}");
        let (x, y, w, h) = (
            b["x"].as_f64().unwrap(),
            b["y"].as_f64().unwrap(),
            b["w"].as_f64().unwrap(),
            b["h"].as_f64().unwrap(),
        );
        assert!(w >= 200.0, "{what}: a colour bar {w} px wide");
        let px = |x: f64| img.get_pixel(x as u32, (y + h / 2.0) as u32).0;
        let near = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(a, b)| a.abs_diff(b) <= 40);
        assert!(
            near(px(x + 3.0), [0, 0, 127]),
            "{what}: left end {:?}",
            px(x + 3.0)
        );
        assert!(
            near(px(x + w - 4.0), [127, 0, 0]),
            "{what}: right end {:?}",
            px(x + w - 4.0)
        );
    }
    bars.len()
}

/// The layout checks every page passes at 1280 px: nothing wider than the window, no section that
/// overflows (tables scroll inside theirs), no cut header.
fn check_fits(p: &serde_json::Value, what: &str) {
    assert!(
        p["overflow"].as_f64().unwrap() <= 0.0,
        "{what}: wider than 1280 px: {p}"
    );
    assert_eq!(p["wide_sections"], serde_json::json!([]), "{what}: {p}");
    assert_eq!(p["cut"], serde_json::json!([]), "{what}: cut headers");
}

#[test]
fn pictures_at_1280_have_colour_bars_labels_and_links() {
    let f = fixture();
    let bin = browser::require_chromium();
    let mut b = Browser::launch(&bin);
    let shots = shots_dir();

    // The overview: the mean maps' and the gallery's colour bars, the view bar, links to image pages.
    let overview = shots.join("overview-1280.png");
    let v = b.visit_at(&url(&f.report), LAYOUT_PROBE, true, 1280, Some(&overview));
    assert!(v.is_clean(), "report.html: {v:#?}");
    let p = probe(&v);
    check_fits(&p, "report.html");
    assert!(check_colour_bars(&p, &overview, "report.html") >= 2, "{p}");
    let meanings: Vec<String> = p["colorbars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["meaning"].as_str().unwrap().to_string())
        .collect();
    assert!(
        meanings
            .iter()
            .any(|m| m.contains("0.5 / 99.5 percentiles")),
        "the gallery's scale says what it means: {meanings:?}"
    );
    let files = strings(&p["files"]);
    assert!(!files.is_empty(), "{p}");
    for href in files
        .iter()
        .chain(&strings(&p["opens"]))
        .chain(&strings(&p["views"]))
    {
        assert!(
            target(&f.report, href).is_file(),
            "report.html links {href}"
        );
    }
    assert!(files.iter().all(|h| h.starts_with("images/")), "{files:?}");
    // Thumbnails: seven tiles (input + six methods) of at least 120 px at 1280 px.
    for w in p["tiles"].as_array().unwrap() {
        assert!(w.as_f64().unwrap() / 7.0 >= 120.0, "strip {w} px wide");
    }
    // Labels: file, label, prediction, confidence, right / wrong on every row.
    for m in strings(&p["meta"]) {
        assert!(
            m.contains("label") && m.contains("predicted") && m.contains("confidence"),
            "{m}"
        );
        assert!(m.contains("right") || m.contains("wrong"), "{m}");
    }
    // No empty group: each group shown has images.
    for g in strings(&p["groups"]) {
        assert!(!g.contains(" 0 image(s)"), "{g}");
    }

    // A gallery page: previous and next, the view bar, the colour bar.
    let page = f.dir.join("gallery-2.html");
    let gallery_shot = shots.join("gallery-2-1280.png");
    let v = b.visit_at(&url(&page), LAYOUT_PROBE, true, 1280, Some(&gallery_shot));
    assert!(v.is_clean(), "gallery-2.html: {v:#?}");
    let p = probe(&v);
    check_fits(&p, "gallery-2.html");
    assert_eq!(check_colour_bars(&p, &gallery_shot, "gallery-2.html"), 1);
    let rels: Vec<&str> = p["pager"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["rel"].as_str().unwrap())
        .collect();
    assert!(rels.contains(&"prev"), "gallery-2 has a previous link: {p}");
    for l in p["pager"].as_array().unwrap() {
        assert!(target(&page, l["href"].as_str().unwrap()).is_file(), "{l}");
    }
    let views = strings(&p["views"]);
    for key in [
        "views/wrong--",
        "views/right--",
        "views/flagged--",
        "views/class-0--",
        "views/method-0--",
    ] {
        assert!(
            views.iter().any(|h| h.starts_with(key))
                || !f.dir.join(format!("{key}score-1.html")).exists(),
            "{key} in {views:?}"
        );
    }
    assert!(
        views.iter().any(|h| h.contains("--confidence-1.html")),
        "{views:?}"
    );
    // A view page (one class, least confident first) renders clean and links back up.
    let view_page = target(&page, views.iter().find(|h| h.contains("class-")).unwrap());
    let v = b.visit_at(&url(&view_page), LAYOUT_PROBE, true, 1280, None);
    assert!(v.is_clean(), "{}: {v:#?}", view_page.display());
    let vp = probe(&v);
    check_fits(&vp, "a view page");
    for href in strings(&vp["files"]).iter().chain(&strings(&vp["views"])) {
        assert!(target(&view_page, href).is_file(), "{href}");
    }

    // An image page: the input at full resolution, every method's map large with its colour bar,
    // the figures, the agreement matrices, links back to the gallery and to the neighbours.
    let image_page = target(&f.report, &files[0]);
    let image_shot = shots.join("image-1280.png");
    let v = b.visit_at(
        &url(&image_page),
        LAYOUT_PROBE,
        true,
        1280,
        Some(&image_shot),
    );
    assert!(v.is_clean(), "{}: {v:#?}", image_page.display());
    let p = probe(&v);
    check_fits(&p, "the image page");
    let methods = p["maps"].as_array().unwrap().len();
    assert_eq!(methods, 6, "{p}");
    assert_eq!(
        check_colour_bars(&p, &image_shot, "the image page"),
        methods
    );
    for b in p["colorbars"].as_array().unwrap() {
        let m = b["meaning"].as_str().unwrap();
        assert!(m.starts_with("here 0 = ") && m.contains(", 1 = "), "{m}");
    }
    let heat = p["heat"].as_array().unwrap();
    assert_eq!(heat.len(), methods, "{p}");
    assert!(
        heat.iter()
            .all(|h| h["loaded"] == true && h["w"].as_f64().unwrap() >= 300.0),
        "{p}"
    );
    let original = p["original"].as_array().unwrap();
    assert!(original.iter().all(|i| i["loaded"] == true), "{p}");
    assert!(
        original[0]["w"].as_u64().unwrap() > 128,
        "full resolution: {p}"
    );
    let figs = strings(&p["figs"]);
    assert!(
        figs.iter()
            .all(|t| t.contains("background mass") && t.contains("deletion AUC")),
        "{figs:?}"
    );
    assert_eq!(p["matrices"], 2, "{p}");
    let meta = strings(&p["meta"]).join(" ");
    assert!(
        meta.contains("label") && meta.contains("predicted") && meta.contains("confidence"),
        "{meta}"
    );
    let toc = p["toc"].as_array().unwrap();
    assert!(
        toc.iter().any(|l| l["text"]
            .as_str()
            .unwrap()
            .starts_with("back to the gallery")),
        "{p}"
    );
    assert!(
        toc.iter().any(|l| l["rel"] == "next"),
        "the first image links the next: {p}"
    );
    for l in toc {
        assert!(
            target(&image_page, l["href"].as_str().unwrap()).is_file(),
            "{l}"
        );
    }
    // Every image has its page.
    let pages = std::fs::read_dir(f.dir.join("images")).unwrap().count();
    assert_eq!(pages, 4, "one page per audited image");
    for shot in [&overview, &gallery_shot, &image_shot] {
        assert_eq!(
            image::open(shot).unwrap().width(),
            1280,
            "{}",
            shot.display()
        );
    }
    println!("screenshots at 1280 px in {}", shots.display());
}

/// `explain` draws what a picture shows into it: the per-method PNG has a caption (file, method,
/// true class, prediction) above the overlay and a colour bar below; the montage has its bar too.
#[test]
fn explain_pictures_are_labelled_and_carry_a_colour_bar() {
    let dir = tempdir();
    let root = dir.path().join("data");
    let set = real_set(&root, 1);
    let out = dir.path().join("explain");
    let out_str = out.to_str().unwrap();
    ok(tool(
        &root,
        &[
            "explain",
            set.join("yes").to_str().unwrap(),
            "--methods",
            "gradcam",
            "--out",
            out_str,
        ],
    ));
    let png = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("__gradcam.png"))
        .expect("a Grad-CAM PNG");
    let img = image::open(&png).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    // The 128-pixel overlay upscaled to 256, plus four caption lines and the colour bar.
    assert_eq!(w, 256);
    assert!(h > w + 100, "{w} x {h}: no caption or colour bar");
    let dark = |y0: u32, y1: u32| {
        (y0..y1)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 90))
            .count()
    };
    assert!(dark(0, 60) > 100, "caption text above the overlay");
    let has = |c: [u8; 3]| img.pixels().any(|p| p.0 == c);
    assert!(
        has([0, 0, 127]) && has([127, 0, 0]),
        "jet's two ends in the colour bar"
    );
    let montage = image::open(out.join("montage.png")).unwrap().to_rgb8();
    assert!(
        montage.pixels().any(|p| p.0 == [127, 0, 0]),
        "the montage's colour bar"
    );
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// Page weight of an existing report, as a browser loads it: `REPORT=/path/to/report.html cargo test
/// --release --test suite report::page_weight -- --ignored --nocapture`. Prints the bytes fetched on
/// opening the page (the window only: lazy images below it are not fetched) and after scrolling to its
/// end.
#[test]
#[ignore = "a measurement on a report made elsewhere: set REPORT"]
fn page_weight() {
    let Some(report) = std::env::var_os("REPORT").map(PathBuf::from) else {
        println!("set REPORT=/path/to/report.html");
        return;
    };
    let bin = browser::chromium().expect("chromium");
    let mut b = Browser::launch(&bin);
    let bytes = |v: &browser::Visit| -> (usize, u64) {
        let mut seen = std::collections::HashSet::new();
        let mut total = 0;
        for u in &v.requested {
            if let Some(p) = u.strip_prefix("file://") {
                if seen.insert(p.to_string()) {
                    total += std::fs::metadata(p).map_or(0, |m| m.len());
                }
            }
        }
        (seen.len(), total)
    };
    for (what, scroll) in [("on opening", false), ("after scrolling to the end", true)] {
        let v = b.visit_with(&url(&report), "1", scroll);
        assert!(v.is_clean(), "{v:#?}");
        let (n, total) = bytes(&v);
        println!(
            "{}: {what}: {n} files, {total} bytes ({:.2} MiB)",
            report.display(),
            total as f64 / 1048576.0
        );
    }
}
