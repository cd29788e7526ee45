//! Helpers shared by the tests: temp workspaces, real Br35H test sets, running the real binary
//! (cheaply), reading its database and output, hand-built models, paths into the repository.
use std::path::{Path, PathBuf};

use tch::{Device, Tensor};
use tumor_audit::model::{InputSpec, LayerSpec, NativeCnn};

pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A native CNN with the given layers; parameters are set with [`set`].
pub fn cnn(specs: &[LayerSpec], channels: i64, size: i64, classes: i64) -> NativeCnn {
    NativeCnn::new(
        specs,
        InputSpec {
            channels,
            size,
            classes,
        },
        Device::Cpu,
    )
    .expect("valid layer list")
}

/// Sets parameter `name` (a state_dict name such as `1.weight`) to `values` with its own shape.
pub fn set(model: &NativeCnn, name: &str, values: &[f32]) {
    let vars = model.vs.variables();
    let mut v = vars
        .get(name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
        .shallow_clone();
    let shape = v.size();
    tch::no_grad(|| v.copy_(&Tensor::from_slice(values).view(shape.as_slice())));
}

/// A 1 x 1 x S x S input from row-major values.
pub fn image(values: &[f32], size: i64) -> Tensor {
    Tensor::from_slice(values).view([1, 1, size, size])
}

pub fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: element {i}: {x} vs {y} (tol {tol})"
        );
    }
}

/// The real binary, run from the repository root, with `--set KEY=VALUE` overrides.
pub fn bin(sets: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tumor-audit"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    for s in sets {
        c.args(["--set", s]);
    }
    c
}

/// The real binary with `--set` overrides held as owned strings.
pub fn bin_with(sets: &[String]) -> std::process::Command {
    let refs: Vec<&str> = sets.iter().map(String::as_str).collect();
    bin(&refs)
}

/// Few samples and steps for the sampling methods: every code path runs, in a fraction of the time.
pub const CHEAP: [&str; 4] = [
    "explain.lime.samples=24",
    "explain.kernel_shap.samples=24",
    "explain.smoothgrad.samples=4",
    "explain.integrated_gradients.steps=8",
];

/// `--set` overrides for an audit of the class folders `classes` under `root`, at [`CHEAP`] cost.
pub fn cheap_sets(root: &Path, classes: &[&str]) -> Vec<String> {
    let mut sets = vec![
        format!("data.root={}", root.display()),
        format!(
            "data.classes={}",
            serde_json::to_string(classes).expect("classes as a YAML flow list")
        ),
    ];
    sets.extend(CHEAP.iter().map(|s| s.to_string()));
    sets
}

/// The real binary run to completion on the class folders `classes` under `root`, at [`CHEAP`] cost.
pub fn run_cheap(root: &Path, classes: &[&str], args: &[&str]) -> std::process::Output {
    bin_with(&cheap_sets(root, classes))
        .args(args)
        .output()
        .unwrap()
}

/// The images of one class of one split of the Br35H data (`make data`), sorted by path.
pub fn br35h(split: &str, class: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo(&format!("data/br35h/{split}/{class}")))
        .expect("run `make data` first")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// A small real test set under `root/Testing`: the first `per_class` Br35H test images per class.
pub fn real_set(root: &Path, per_class: usize) -> PathBuf {
    let set = root.join("Testing");
    for class in ["no", "yes"] {
        std::fs::create_dir_all(set.join(class)).unwrap();
        for f in br35h("Testing", class).iter().take(per_class) {
            std::fs::copy(f, set.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    set
}

/// The one integer a query such as `SELECT count(*) ...` returns.
pub fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Exit code, stdout and stderr of a finished command, for assertion messages.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Stdout of a command that must have succeeded (else the test fails showing both streams).
pub fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
