//! What the audit shows people: attribution maps coloured as the notebook showed them
//! ([`heatmap`]: clip, normalise, jet, overlay on the grey image) and the figures they are laid
//! out in ([`figure`]: montage, upscale, labels in the bitmap [`font`]). Display only: metrics
//! never use these values.

pub mod figure;
pub mod font;
pub mod heatmap;

pub use figure::{montage, upscale, MAX_ROW_LABEL_CHARS, MONTAGE_PAD};
pub use font::{CHAR_ADVANCE, CHAR_HEIGHT, FONT_SCALE};
pub use heatmap::{grey_to_rgb, jet, normalize_for_display, overlay, percentile, DisplayParams};
