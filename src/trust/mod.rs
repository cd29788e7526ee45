//! Trust checks on the attribution maps themselves (issue 8):
//!
//! - [`faithfulness`]: deletion and insertion curves per image x method, with a random pixel order as
//!   the baseline (does removing what a map calls important change the model's score faster than
//!   removing pixels at random?);
//! - [`sanity`]: the cascading model-parameter randomisation test of Adebayo et al. (2018) (does a
//!   map change when the model it explains is destroyed layer by layer?), plus the other-class check
//!   (does a map change when another class is explained?).
pub mod faithfulness;
pub mod sanity;

pub use faithfulness::{FaithfulnessConfig, Score};
