//! What the audit shows people: attribution maps coloured as the notebook showed them
//! ([`heatmap`]: clip, normalise, jet or a diverging map for signed maps, overlay on the grey image),
//! the colour bars that say what the colours mean ([`colorbar`]), and the figures they are laid out
//! in ([`figure`]: montage, labelled tiles, upscale, with text from the embedded font in [`font`]).
//! Display only: metrics never use these values.

pub mod colorbar;
pub mod figure;
pub mod font;
pub mod heatmap;

pub use colorbar::ColorBar;
pub use figure::{montage, stack, text_block, upscale, Caption, MAX_ROW_LABEL_WIDTH, MONTAGE_PAD};
pub use font::LABEL_PX;
pub use heatmap::{
    colour, display_range, diverging, grey_to_rgb, heatmap, jet, normalize_for_display, opacity,
    overlay, percentile, scale_image, DisplayParams,
};
