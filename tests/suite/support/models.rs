//! Models for the tests: hand-built networks with set parameters, trained or bundled ones loaded and
//! traced to TorchScript, the small CNN the known-answer tests train through the binary, explain inputs,
//! what the ONNX fixtures' frameworks computed, and comparing outputs and maps.
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};
use tumor_audit::attribution::ImageInput;
use tumor_audit::config::Settings;
use tumor_audit::model::{InputSpec, LayerSpec, NativeCnn};

use super::repo;

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

/// A 3x3 convolution with `out` channels and the default padding.
pub fn conv(out: i64) -> LayerSpec {
    LayerSpec::Conv {
        out,
        kernel: 3,
        padding: None,
    }
}

/// flatten - dense(3) - relu - dense(2) on 1 x 2 x 2 inputs, with the parameters of layers 1 and 3.
pub fn dense_relu_dense(w1: &[f32], b1: &[f32], w3: &[f32], b3: &[f32]) -> NativeCnn {
    let m = cnn(
        &[
            LayerSpec::Flatten,
            LayerSpec::Dense { out: 3 },
            LayerSpec::Relu,
            LayerSpec::Dense { out: 2 },
        ],
        1,
        2,
        2,
    );
    set(&m, "1.weight", w1);
    set(&m, "1.bias", b1);
    set(&m, "3.weight", w3);
    set(&m, "3.bias", b3);
    m
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

/// The native CNN of `settings`' layers for `input`, with the weights in `weights`, frozen.
pub fn load_native(settings: &Settings, input: InputSpec, weights: &Path) -> NativeCnn {
    let mut cnn = NativeCnn::new(&settings.layers(), input, Device::Cpu).unwrap();
    cnn.load(weights).unwrap();
    cnn.vs.freeze();
    cnn
}

/// `f` traced into the TorchScript module `name`, saved at `path`, on one zero input of `input`'s shape.
pub fn save_trace(
    path: &Path,
    name: &str,
    input: &InputSpec,
    f: &mut dyn FnMut(&Tensor) -> Tensor,
) -> PathBuf {
    let probe = Tensor::zeros(
        [1, input.channels, input.size, input.size],
        (Kind::Float, Device::Cpu),
    );
    let module =
        tch::CModule::create_by_tracing(name, "forward", &[probe], &mut |xs| vec![f(&xs[0])])
            .unwrap();
    module.save(path).unwrap();
    path.to_path_buf()
}

/// The bundled CNN: config.yml's layers with the weights in models/, on 1 x 128 x 128 inputs.
pub fn bundled_cnn() -> NativeCnn {
    let settings = Settings::load(&repo("config.yml"), &[]).unwrap();
    let input = InputSpec {
        channels: 1,
        size: 128,
        classes: 2,
    };
    load_native(&settings, input, &repo("models/cnn128-br35h.safetensors"))
}

/// The bundled CNN traced into the TorchScript file `dir/name` (`scale` multiplies its logits: NaN
/// gives a model whose every output is NaN).
pub fn bundled_torchscript(dir: &Path, name: &str, scale: f64) -> PathBuf {
    let cnn = bundled_cnn();
    save_trace(&dir.join(name), "Cnn", &cnn.input, &mut |x| {
        cnn.forward_t(x, false) * scale
    })
}

/// `--set` overrides that train (`tumor-audit train`) and audit the small custom CNN of the
/// known-answer tests on `root`'s images of side `size`: weights in `root/w.safetensors`, no
/// augmentation, three methods, Kernel SHAP with `shap_samples` on a `grid_cells` grid.
pub fn small_cnn_sets(
    root: &Path,
    size: u32,
    epochs: u32,
    shap_samples: u32,
    grid_cells: u32,
) -> Vec<String> {
    vec![
        format!("données.image.size={size}"),
        "model.architecture=custom".into(),
        "model.layers=[{conv: {out: 8}}, relu, {maxpool: {kernel: 2}}, {conv: {out: 16}}, relu, {maxpool: {kernel: 2}}, flatten, {dense: {out: 2}}]".into(),
        format!("model.weights={}", root.join("w.safetensors").display()),
        format!("data.root={}", root.display()),
        format!("training.epochs={epochs}"),
        format!("training.patience={epochs}"),
        "training.learning_rate=0.003".into(),
        "training.augment={horizontal_flip: false, rotate_degrees: 0, intensity: 0}".into(),
        "explain.methods=[integrated_gradients, gradcam, kernel_shap]".into(),
        format!("explain.kernel_shap.samples={shap_samples}"),
        "explain.integrated_gradients.steps=16".into(),
        "explain.segmentation.method=grid".into(),
        format!("explain.segmentation.grid_cells={grid_cells}"),
    ]
}

/// The input of one image to the attribution methods (no segmentation yet).
pub fn explain_input<'a>(
    id: &'a str,
    x: &'a Tensor,
    grey: &'a [f32],
    target: i64,
) -> ImageInput<'a> {
    ImageInput {
        id,
        x,
        grey,
        target,
        segmentation: Default::default(),
    }
}

/// The largest absolute value (0 for none).
pub fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |s, x| s.max(x.abs()))
}

/// The largest absolute difference of the pairs of `a` and `b` (0 for none).
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |s, (x, y)| s.max((x - y).abs()))
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

/// What scripts/make-onnx-fixtures.py wrote beside the ONNX fixture `name`
/// (tests/fixtures/onnx/NAME.json): its input shape and its own framework's outputs.
pub fn onnx_meta(name: &str) -> serde_json::Value {
    let path = repo(&format!("tests/fixtures/onnx/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The items of the JSON array `v`, each read by `item` (such as `Value::as_i64`), which must succeed.
pub fn json_list<'a, T>(
    v: &'a serde_json::Value,
    item: impl Fn(&'a serde_json::Value) -> Option<T>,
) -> Vec<T> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|x| item(x).expect("an item of the expected type"))
        .collect()
}
