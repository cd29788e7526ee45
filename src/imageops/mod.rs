//! Pixel operations shared by the steps that look at images themselves (the brain mask, the
//! superpixel segmentations, the model-input resize): Gaussian blur with reflected borders, connected
//! regions and hole filling, binary morphology, PIL- and OpenCV-exact resizing. A leaf module: it depends on nothing else in the crate.
//!
//! Images are row-major `width x height` slices (channel-last when there are channels); masks
//! are `&[bool]` of the same layout.

pub mod blur;
pub mod components;
pub mod morphology;
pub mod resize;

pub use blur::gaussian_blur;
pub use components::{
    components, fill_holes, flood_regions, largest_component, Components, Connectivity, NO_REGION,
    SIDE_BOTTOM, SIDE_LEFT, SIDE_RIGHT, SIDE_TOP,
};
pub use morphology::{close, dilate, erode};
