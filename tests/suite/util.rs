//! Helpers shared by the tests: temp workspaces, hand-built models, paths into the repository.
use std::path::PathBuf;

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
