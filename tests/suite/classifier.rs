//! The three model kinds behind one trait: the same small CNN as the native network, its ONNX export
//! and its TorchScript trace pass the same trait-level checks (logits, probabilities, copies), give
//! the same maps where they can, and refuse what they cannot do with the reason.
use tch::{Device, Kind, Tensor};
use tumor_audit::attribution::{gradcam, gradient};
use tumor_audit::model::onnx::{export::export_native, OnnxModel};
use tumor_audit::model::{CamLayer, Classifier, LayerSpec, Model, NativeCnn};
use tumor_audit::trust::sanity;

use super::support::models::{self, cnn, conv, save_trace};
use super::support::tempdir;

const SIZE: i64 = 12;

/// conv(4) - relu - maxpool - conv(6) - relu - flatten - dense(3), on 2-channel 12x12 inputs, with
/// tch's seeded initialisation.
fn small() -> NativeCnn {
    tch::manual_seed(11);
    let mut m = cnn(
        &[
            conv(4),
            LayerSpec::Relu,
            LayerSpec::Maxpool { kernel: 2 },
            conv(6),
            LayerSpec::Relu,
            LayerSpec::Flatten,
            LayerSpec::Dense { out: 3 },
        ],
        2,
        SIZE,
        3,
    );
    m.vs.freeze();
    m
}

/// A fixed, image-like batch of 3.
fn batch() -> Tensor {
    Tensor::arange(3 * 2 * SIZE * SIZE, (Kind::Float, Device::Cpu))
        .remainder(29.0)
        .divide_scalar(28.0)
        .view([3, 2, SIZE, SIZE])
}

/// The three kinds of one network: (name, model).
fn kinds(dir: &std::path::Path) -> Vec<(&'static str, Model)> {
    let native = small();
    let onnx_path = dir.join("small.onnx");
    export_native(&native, &onnx_path).unwrap();
    let onnx = OnnxModel::load(&onnx_path, native.input.clone(), "auto", Device::Cpu, 4).unwrap();
    let pt = save_trace(&dir.join("small.pt"), "Small", &native.input, &mut |x| {
        native.forward_t(x, false)
    });
    let script = Model::load_torchscript(&pt, native.input.clone()).unwrap();
    vec![
        ("native", Model::new(native)),
        ("onnx", Model::new(onnx)),
        ("torchscript", script),
    ]
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn every_kind_gives_the_same_logits_probabilities_and_independent_copies() {
    let dir = tempdir();
    let kinds = kinds(dir.path());
    let x = batch();
    let reference = kinds[0].1.logits(&x).unwrap();
    let scale = reference.abs().max().double_value(&[]);
    assert!(scale > 0.0);
    for (name, m) in &kinds {
        assert_eq!(m.input().classes, 3, "{name}");
        assert_eq!(m.device(), Device::Cpu, "{name}");
        let logits = m.logits(&x).unwrap();
        assert_eq!(logits.size(), [3, 3], "{name}");
        let d = max_diff(&logits, &reference);
        assert!(d <= 1e-5 * scale, "{name}: logits differ by {d}");
        // Probabilities: the softmax of the logits, each row summing to 1.
        let p = m.predict_probs(&x).unwrap();
        let soft = reference.softmax(-1, Kind::Float);
        for (i, row) in p.iter().enumerate() {
            assert!(
                (row.iter().sum::<f32>() - 1.0).abs() < 1e-5,
                "{name}: row {i}"
            );
            for (k, v) in row.iter().enumerate() {
                let want = soft.double_value(&[i as i64, k as i64]) as f32;
                assert!((v - want).abs() < 1e-5, "{name}: p[{i}][{k}] {v} vs {want}");
            }
        }
        assert!(
            !m.describe().is_empty() && !m.explains().is_empty(),
            "{name}"
        );
    }
    // A copy is independent: re-initialising its output layer changes it, not the original.
    for (name, m) in kinds.iter().take(2) {
        let copy = m.duplicate().unwrap();
        let units = sanity::cascade_units(&copy).unwrap();
        assert_eq!(
            units.len(),
            3,
            "{name}: two convolutions and the dense layer"
        );
        sanity::reinit_unit(&copy, &units[0], 3).unwrap();
        assert!(
            max_diff(&copy.logits(&x).unwrap(), &reference) > 1e-3,
            "{name}"
        );
        assert!(
            max_diff(&m.logits(&x).unwrap(), &reference) <= 1e-5 * scale,
            "{name}"
        );
    }
}

#[test]
fn native_and_onnx_give_the_same_guided_backprop_and_gradcam_and_torchscript_refuses_with_the_reason(
) {
    let dir = tempdir();
    let kinds = kinds(dir.path());
    let x = batch();
    let targets = [0i64, 2, 1];
    let (native, onnx, script) = (&kinds[0].1, &kinds[1].1, &kinds[2].1);
    let guided_n = gradient::guided_backprop(native, &x, &targets).unwrap();
    let guided_o = gradient::guided_backprop(onnx, &x, &targets).unwrap();
    let cam_n = gradcam::gradcam(native, &x, &targets, CamLayer::default()).unwrap();
    let cam_o = gradcam::gradcam(onnx, &x, &targets, CamLayer::default()).unwrap();
    for (what, a, b) in [
        ("guided", &guided_n, &guided_o),
        ("grad-cam", &cam_n, &cam_o),
    ] {
        assert_eq!(a.len(), 3);
        for (i, (ma, mb)) in a.iter().zip(b.iter()).enumerate() {
            let (scale, d) = (models::max_abs(ma), models::max_diff(ma, mb));
            assert!(
                d <= 1e-4 * scale.max(1e-6),
                "{what} image {i}: {d} (scale {scale})"
            );
        }
    }
    // The plain gradient runs on every kind, TorchScript included.
    let g = gradient::gradient(script, &x, &targets).unwrap();
    let gn = gradient::gradient(native, &x, &targets).unwrap();
    assert_eq!(g.len(), gn.len());
    // What TorchScript cannot do: the reason and what to do instead, through the trait.
    let t = Tensor::from_slice(&targets);
    let refusals = [
        script
            .guided_input_gradient(&x, &t)
            .err()
            .unwrap()
            .to_string(),
        script
            .cam_cut(&x, CamLayer::default())
            .err()
            .unwrap()
            .to_string(),
        script.param_units().err().unwrap().to_string(),
        script.duplicate().err().unwrap().to_string(),
    ];
    for e in &refusals {
        assert!(
            e.contains("opaque to tch") && e.contains("torch.onnx.export"),
            "{e}"
        );
    }
    assert!(refusals[0].contains("Guided Backprop"), "{}", refusals[0]);
    assert!(refusals[1].contains("Grad-CAM"), "{}", refusals[1]);
    assert!(
        refusals[2].contains("model-randomisation"),
        "{}",
        refusals[2]
    );
}
