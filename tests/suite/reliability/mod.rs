//! Nothing fails silently and nothing of the user's is touched, each through the real binary on small
//! real images, by capability: failures reported by exit code and log (`failures`), bad values and
//! names refused before any work (`refusals`), the user's databases and files left as they were
//! (`ownership`), concurrent audits and locked databases (`locks`), interrupted, resumed and merged
//! runs (`resume`), and inputs that never panic the config loader or the decoder (`no_input_panics`).
mod failures;
mod locks;
mod no_input_panics;
mod ownership;
mod refusals;
mod resume;
