//! Trust checks on the attribution maps themselves (issue 8) and the run's verdict (issue 15):
//!
//! - [`faithfulness`]: deletion and insertion curves per image x method, with a random pixel order as
//!   the baseline (does removing what a map calls important change the model's score faster than
//!   removing pixels at random?);
//! - [`sanity`]: the cascading model-parameter randomisation test of Adebayo et al. (2018) (does a
//!   map change when the model it explains is destroyed layer by layer?), plus the other-class check
//!   (does a map change when another class is explained?);
//! - [`reproducibility`]: split-half agreement of the stochastic maps (would another seed give the
//!   same map?), from the samples already drawn;
//! - [`shortcut`]: shortcut discovery (evidence in the same place across a class's images), its causal
//!   confirmation on the model, trust-weighted calibrated flags and the one verdict per run.
pub mod faithfulness;
pub mod sanity;
pub mod shortcut;

pub use faithfulness::{FaithfulnessConfig, Score};
