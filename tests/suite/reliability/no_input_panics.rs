//! Property-based checks, a bounded number of cases each: no text given to the config loader (a whole
//! file or a `--set` override) and no bytes given to the image decoder make them panic; they return
//! an error instead.
use proptest::prelude::*;
use tumor_audit::config::Settings;
use tumor_audit::dataset::{self, Limits};

use crate::support::repo;

/// Keys that exist, so that overrides reach the typed fields and their validation.
const KEYS: &[&str] = &[
    "données.image.size",
    "données.image.grayscale",
    "data.classes",
    "data.max_image_pixels",
    "model.architecture",
    "model.layers",
    "explain.profile",
    "explain.methods",
    "explain.target",
    "explain.batch_size",
    "explain.integrated_gradients.steps",
    "explain.integrated_gradients.baseline_value",
    "explain.smoothgrad.noise",
    "explain.lime.samples",
    "explain.lime.kernel_width",
    "explain.segmentation.method",
    "explain.segmentation.grid_cells",
    "explain.gradient_precision",
    "explain.prepacked_weights",
    "explain.shared_evaluations",
    "explain.faithfulness.steps",
    "training.learning_rate",
    "output.dir",
];

fn config() -> String {
    std::fs::read_to_string(repo("config.yml")).unwrap()
}

/// Small real images as bytes: a JPEG and a PNG (made once).
fn real_images() -> &'static [Vec<u8>] {
    static IMAGES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    IMAGES.get_or_init(make_images)
}

fn make_images() -> Vec<Vec<u8>> {
    let jpeg = std::fs::read(repo("data/raw/br35h/yes/y1.jpg")).unwrap();
    let img = image::load_from_memory(&jpeg).unwrap().thumbnail(24, 24);
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut small_jpeg = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut small_jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    vec![small_jpeg, png]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,24}",
        "-?[0-9]{1,24}(\\.[0-9]{0,6})?(e[+-]?[0-9]{1,3})?",
        Just(".nan".to_string()),
        Just("-.inf".to_string()),
        Just("[gradcam, gradcam]".to_string()),
        Just("{a: [1, {b: 2}]}".to_string()),
        Just("!!binary AAAA".to_string()),
        Just("~".to_string()),
        Just("18446744073709551616".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn overrides_of_known_keys_never_panic(key in prop::sample::select(KEYS), value in value()) {
        let _ = Settings::from_yaml(&config(), &[format!("{key}={value}")]);
    }

    #[test]
    fn arbitrary_overrides_never_panic(assignment in ".{0,48}") {
        let _ = Settings::from_yaml(&config(), &[assignment]);
    }

    #[test]
    fn arbitrary_config_text_never_panics(text in ".{0,300}") {
        let _ = Settings::from_yaml(&text, &[]);
    }

    #[test]
    fn a_mangled_config_file_never_panics(cut in 0usize..4000, insert in ".{0,12}") {
        let mut text = config();
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, &insert);
        let _ = Settings::from_yaml(&text, &[]);
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = dataset::decode(&bytes, Limits::default());
    }

    #[test]
    fn damaged_real_images_never_panic_the_decoder(
        which in 0usize..2,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = real_images()[which].clone();
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        let keep = cut.index(bytes.len()).max(1);
        bytes.truncate(keep);
        // Small limits too: the limit checks themselves see damaged headers.
        let _ = dataset::decode(&bytes, Limits::default());
        let _ = dataset::decode(&bytes, Limits { max_file_bytes: 4096, max_image_pixels: 64 });
    }
}
