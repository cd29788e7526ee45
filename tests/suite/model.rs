//! The native CNN: weights round trip, TorchScript equivalence, shape checks, evaluation and training.
use tch::{Device, Kind, Tensor};
use tumor_audit::config::{AugmentConfig, TrainingConfig};
use tumor_audit::evaluate;
use tumor_audit::model::train::{self, LabelledTensors};
use tumor_audit::model::{preset_layers, Classifier, InputSpec, LayerSpec, Model, NativeCnn};

use super::support::models::{cnn, conv};
use super::support::tempdir;

fn small_cnn() -> NativeCnn {
    tch::manual_seed(3);
    cnn(&preset_layers([4, 4, 8, 8], 16, 2), 1, 32, 2)
}

#[test]
fn weights_save_load_round_trip_gives_identical_logits() {
    let dir = tempdir();
    let path = dir.path().join("w.safetensors");
    let a = small_cnn();
    a.save(&path).unwrap();
    tch::manual_seed(99);
    let mut b = cnn(&preset_layers([4, 4, 8, 8], 16, 2), 1, 32, 2);
    let x = Tensor::randn([3, 1, 32, 32], (Kind::Float, Device::Cpu));
    assert!(
        !a.forward_t(&x, false).equal(&b.forward_t(&x, false)),
        "different seeds give different models"
    );
    b.load(&path).unwrap();
    assert!(
        a.forward_t(&x, false).equal(&b.forward_t(&x, false)),
        "bit-identical logits after load"
    );
    // PyTorch nn.Sequential state_dict names
    let mut names: Vec<String> = a.vs.variables().into_keys().collect();
    names.sort();
    assert!(
        names.contains(&"0.weight".to_string()) && names.contains(&"14.bias".to_string()),
        "{names:?}"
    );
}

#[test]
fn wrong_size_weights_fail_with_expected_vs_found() {
    let dir = tempdir();
    let path = dir.path().join("w.safetensors");
    small_cnn().save(&path).unwrap();
    // The same layer list at 64x64 needs a larger dense layer.
    let mut other = cnn(&preset_layers([4, 4, 8, 8], 16, 2), 1, 64, 2);
    let e = other.load(&path).unwrap_err().to_string();
    assert!(
        e.contains("11.weight") && e.contains("[16, 512]") && e.contains("[16, 2048]"),
        "{e}"
    );
    let e = other
        .load(&dir.path().join("missing.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not found"), "{e}");
}

#[test]
fn layer_list_that_does_not_fit_the_input_is_refused() {
    // A 1 x 8 x 8 input and two classes; the error of building `specs` on it.
    let refusal = |specs: &[LayerSpec]| {
        let input = InputSpec {
            channels: 1,
            size: 8,
            classes: 2,
        };
        NativeCnn::new(specs, input, Device::Cpu).err().unwrap()
    };
    let e = refusal(&[LayerSpec::Flatten, LayerSpec::Dense { out: 3 }]);
    assert!(
        e.to_string().contains("3 outputs") && e.to_string().contains("2 classes"),
        "{e}"
    );
    let e = refusal(&[LayerSpec::Dense { out: 2 }]);
    assert!(e.to_string().contains("model.layers[0]"), "{e}");
}

#[test]
fn torchscript_traced_from_the_native_cnn_gives_the_same_logits() {
    let dir = tempdir();
    let path = dir.path().join("traced.pt");
    let mut cnn = small_cnn();
    // Frozen weights (no requires_grad) become constants of the traced module.
    cnn.vs.freeze();
    let probe = Tensor::randn([1, 1, 32, 32], (Kind::Float, Device::Cpu));
    let module =
        tch::CModule::create_by_tracing("Cnn", "forward", &[probe.shallow_clone()], &mut |xs| {
            vec![cnn.forward_t(&xs[0], false)]
        })
        .unwrap();
    module.save(&path).unwrap();
    let ts = Model::load_torchscript(
        &path,
        InputSpec {
            channels: 1,
            size: 32,
            classes: 2,
        },
    )
    .unwrap();
    let x = Tensor::randn([4, 1, 32, 32], (Kind::Float, Device::Cpu));
    let native = cnn.forward_t(&x, false);
    let script = ts.forward(&x);
    let diff = (native - script).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "max abs difference {diff}");
    // Wrong input size or class count is refused before any work, expected vs found.
    let e = Model::load_torchscript(
        &path,
        InputSpec {
            channels: 1,
            size: 64,
            classes: 2,
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("1x1x64x64"), "{e}");
    let e = Model::load_torchscript(
        &path,
        InputSpec {
            channels: 1,
            size: 32,
            classes: 4,
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("[1, 2]") && e.contains("[1, 4]"), "{e}");
}

#[test]
fn a_torchscript_module_traced_at_batch_1_runs_image_by_image_and_probabilities_are_refused() {
    let dir = tempdir();
    let mut cnn = small_cnn();
    cnn.vs.freeze();
    let input = InputSpec {
        channels: 1,
        size: 32,
        classes: 2,
    };
    let trace = |name: &str, f: &mut dyn FnMut(&Tensor) -> Tensor| {
        let probe = Tensor::randn([1, 1, 32, 32], (Kind::Float, Device::Cpu));
        let module =
            tch::CModule::create_by_tracing("M", "forward", &[probe], &mut |xs| vec![f(&xs[0])])
                .unwrap();
        let path = dir.path().join(name);
        module.save(&path).unwrap();
        path
    };
    // The batch of 1 is baked into the trace by a reshape to [1, 1024] (what a user's VGG16
    // trace did): a batch of 64 fails inside the module, so images run one at a time.
    let fixed = trace("fixed.pt", &mut |x| {
        cnn.forward_t(&x.reshape([1, 1, 32, 32]), false)
    });
    let ts = Model::load_torchscript_on(&fixed, input.clone(), Device::Cpu, 64).unwrap();
    assert!(
        ts.describe().contains("fixed batch of 1"),
        "{}",
        ts.describe()
    );
    let x = Tensor::randn([5, 1, 32, 32], (Kind::Float, Device::Cpu));
    let diff = (ts.forward(&x) - cnn.forward_t(&x, false))
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff < 1e-5, "max abs difference {diff}");
    // A module ending in a softmax: its outputs are probabilities, never explained as logits.
    let soft = trace("softmax.pt", &mut |x| {
        cnn.forward_t(x, false).softmax(-1, Kind::Float)
    });
    let e = Model::load_torchscript(&soft, input)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("look like probabilities") && e.contains("ONNX"),
        "{e}"
    );
}

#[test]
fn evaluation_matches_a_hand_computed_confusion_matrix() {
    let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    // true:      a a a b b c c c c
    // predicted: a a b b c c c a c
    let labels = [0, 0, 0, 1, 1, 2, 2, 2, 2];
    let preds = [0, 0, 1, 1, 2, 2, 2, 0, 2];
    let probs: Vec<Vec<f32>> = preds
        .iter()
        .map(|&p| (0..3).map(|c| if c == p { 0.8 } else { 0.1 }).collect())
        .collect();
    let ev = evaluate::evaluate(&labels, &probs, &classes);
    assert_eq!(
        ev.confusion,
        vec![vec![2, 1, 0], vec![0, 1, 1], vec![1, 0, 3]]
    );
    assert!((ev.accuracy - 6.0 / 9.0).abs() < 1e-12);
    // class a: precision 2/3, recall 2/3; class b: precision 1/2, recall 1/2; class c: precision 3/4, recall 3/4
    let p: Vec<f64> = ev.per_class.iter().map(|c| c.precision).collect();
    let r: Vec<f64> = ev.per_class.iter().map(|c| c.recall).collect();
    for (x, y) in p.iter().zip([2.0 / 3.0, 0.5, 0.75]) {
        assert!((x - y).abs() < 1e-12);
    }
    for (x, y) in r.iter().zip([2.0 / 3.0, 0.5, 0.75]) {
        assert!((x - y).abs() < 1e-12);
    }
    assert!((ev.per_class[2].f1 - 0.75).abs() < 1e-12);
    assert_eq!(ev.roc_auc, None);
    // Binary AUC: positives score 0.9, 0.4; negatives 0.5, 0.1 -> 3 of 4 pairs ordered -> 0.75
    let auc = evaluate::roc_auc(&[0.9, 0.4, 0.5, 0.1], &[true, true, false, false]).unwrap();
    assert!((auc - 0.75).abs() < 1e-12);
    // ties count one half
    assert_eq!(evaluate::roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
}

#[test]
fn a_tiny_training_run_converges_on_separable_synthetic_data() {
    // Class 1 images have a bright square on the left half, class 0 on the right half.
    tch::manual_seed(0);
    let make = |n: i64, offset: i64| {
        let x = Tensor::zeros([n, 1, 16, 16], (Kind::Float, Device::Cpu));
        let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(2);
        for i in 0..n {
            let left = (i + offset) % 2 == 1;
            let col = if left { 2 } else { 10 };
            let row = (i * 3) % 10;
            let _ = x
                .get(i)
                .get(0)
                .narrow(0, row, 4)
                .narrow(1, col, 4)
                .fill_(1.0);
            let _ = y.get(i).fill_(if left { 1 } else { 0 });
        }
        LabelledTensors { x, y }
    };
    let tr = make(64, 0);
    let va = make(16, 1);
    let specs = vec![
        conv(4),
        LayerSpec::Relu,
        LayerSpec::Maxpool { kernel: 2 },
        LayerSpec::Flatten,
        LayerSpec::Dense { out: 2 },
    ];
    let mut cnn = cnn(&specs, 1, 16, 2);
    let cfg = TrainingConfig {
        seed: 1,
        epochs: 25,
        batch_size: 8,
        learning_rate: 0.01,
        weight_decay: 0.0,
        patience: 25,
        augment: AugmentConfig {
            horizontal_flip: false,
            rotate_degrees: 0.0,
            intensity: 0.0,
        },
    };
    let before = train::evaluate_loss(&cnn, &va, 16).0;
    let out = train::train(&mut cnn, &tr, &va, &cfg, &indicatif::ProgressBar::hidden()).unwrap();
    let (loss, acc) = train::evaluate_loss(&cnn, &va, 16);
    assert!(loss < before / 4.0, "validation loss {before} -> {loss}");
    assert_eq!(acc, 1.0, "validation accuracy");
    assert_eq!(
        out.best_val_loss, loss,
        "the best epoch's weights are restored"
    );
}

#[test]
fn augmentation_is_seeded() {
    use rand::SeedableRng;
    let x = Tensor::rand([4, 1, 16, 16], (Kind::Float, Device::Cpu));
    let cfg = AugmentConfig::default();
    let a = train::augment(&x, &cfg, &mut rand_chacha::ChaCha8Rng::seed_from_u64(5));
    let b = train::augment(&x, &cfg, &mut rand_chacha::ChaCha8Rng::seed_from_u64(5));
    assert!(a.equal(&b));
    assert!(!a.equal(&x));
}
