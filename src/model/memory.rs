//! What one image costs in memory inside the model, and the batch sizes a memory budget allows
//! (`explain.memory_budget`). A backward pass keeps every activation of its batch (and builds their
//! gradients), so the gradient methods' batches (`explain.batch_size`) cost the most; a forward
//! without gradients (LIME / Kernel SHAP, `explain.perturbation_batch_size`) only holds the values
//! alive at once. Batch sizes never change the maps, only the time and memory they take.
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::Device;

/// `explain.memory_budget`: how much memory the model's activations may take for one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryBudget {
    /// A quarter of the machine's memory on the CPU (half of it is the per-image buffers' limit;
    /// the rest is for libtorch's workspaces, the decode threads and the writer); 8 GiB on CUDA,
    /// whose card memory libtorch does not report here.
    #[default]
    Auto,
    Bytes(u64),
}

impl MemoryBudget {
    pub fn is_auto(&self) -> bool {
        *self == MemoryBudget::Auto
    }

    /// The budget in bytes for a model on `device`.
    pub fn bytes(self, device: Device) -> u64 {
        match self {
            MemoryBudget::Bytes(b) => b,
            MemoryBudget::Auto if device.is_cuda() => 8 << 30,
            MemoryBudget::Auto => machine_memory().map_or(2 << 30, |m| m / 4),
        }
    }

    /// Reads `auto`, a byte count, or a number with a unit: `512MiB`, `4 GiB`, `2GB` (binary units
    /// KiB / MiB / GiB / TiB and decimal KB / MB / GB / TB; a bare number is bytes).
    pub fn parse(s: &str) -> Result<MemoryBudget, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(MemoryBudget::Auto);
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = (t[..split].trim(), t[split..].trim());
        let scale: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => {
                return Err(format!(
                    "`{s}`: unknown unit `{unit}`; allowed auto, a byte count, or a number with KiB, MiB, GiB, TiB, KB, MB, GB, TB"
                ))
            }
        };
        let value: f64 = num
            .parse()
            .map_err(|_| format!("`{s}`: expected auto or a size such as 4GiB"))?;
        let bytes = value * scale as f64;
        if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
            return Err(format!("`{s}`: the budget must be at least 1 byte"));
        }
        Ok(MemoryBudget::Bytes(bytes.round() as u64))
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemoryBudget::Auto => write!(f, "auto"),
            MemoryBudget::Bytes(b) => {
                for (unit, size) in [
                    ("TiB", 1u64 << 40),
                    ("GiB", 1 << 30),
                    ("MiB", 1 << 20),
                    ("KiB", 1 << 10),
                ] {
                    if b >= size && b % size == 0 {
                        return write!(f, "{}{unit}", b / size);
                    }
                }
                write!(f, "{b}")
            }
        }
    }
}

impl Serialize for MemoryBudget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for MemoryBudget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MemoryBudget, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(0) => Err(serde::de::Error::custom(
                "0: the budget must be at least 1 byte",
            )),
            Raw::Bytes(b) => Ok(MemoryBudget::Bytes(b)),
            Raw::Text(t) => MemoryBudget::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// The machine's memory (`MemTotal`), when the system says.
pub fn machine_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = s
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The float32 activations of one image inside the model, in bytes (from a forward at batch 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActivationMemory {
    /// Every intermediate value, the input included: what a backward pass keeps.
    pub kept: u64,
    /// The most held at once by a forward without gradients (each value freed after its last use).
    pub live: u64,
}

impl ActivationMemory {
    /// One image of a gradient batch: the kept activations and, during the backward pass, gradients
    /// of the same sizes.
    pub fn per_gradient_image(&self) -> u64 {
        self.kept.saturating_mul(2)
    }

    /// One image of a forward-only batch: the live values and as much again for the operators'
    /// temporaries (layout reorders, im2col buffers).
    pub fn per_forward_image(&self) -> u64 {
        self.live.saturating_mul(2)
    }
}

/// The batch sizes used: the configured ones, lowered to what the budget holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPlan {
    pub batch_size: usize,
    pub perturbation_batch_size: usize,
    pub budget: u64,
    /// `None` when the model's activations cannot be seen (a TorchScript module): the configured
    /// sizes are used as they are.
    pub memory: Option<ActivationMemory>,
}

/// Lowers `batch_size` (gradient batches) and `perturbation_batch_size` (forward-only batches) so
/// that one batch's activations stay within `budget` bytes; never below 1 (one image is what the
/// model needs in any case).
pub fn plan_batches(
    batch_size: usize,
    perturbation_batch_size: usize,
    memory: Option<ActivationMemory>,
    budget: u64,
) -> BatchPlan {
    let fit = |configured: usize, per_image: u64| {
        let most = (budget / per_image.max(1)).max(1);
        configured.min(usize::try_from(most).unwrap_or(usize::MAX))
    };
    match memory {
        Some(m) => BatchPlan {
            batch_size: fit(batch_size, m.per_gradient_image()),
            perturbation_batch_size: fit(perturbation_batch_size, m.per_forward_image()),
            budget,
            memory,
        },
        None => BatchPlan {
            batch_size,
            perturbation_batch_size,
            budget,
            memory,
        },
    }
}

/// Bytes as people read them (`1.5 GiB`, `320 MiB`).
pub fn show_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

impl fmt::Display for BatchPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.memory {
            Some(m) => write!(
                f,
                "batch sizes {} (gradient methods, ~{} per image) and {} (LIME / Kernel SHAP forwards, ~{} per image) within explain.memory_budget {}",
                self.batch_size,
                show_bytes(m.per_gradient_image()),
                self.perturbation_batch_size,
                show_bytes(m.per_forward_image()),
                show_bytes(self.budget)
            ),
            None => write!(
                f,
                "batch sizes {} and {} as configured (the model's activations cannot be measured)",
                self.batch_size, self.perturbation_batch_size
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_read_with_their_units() {
        assert_eq!(MemoryBudget::parse("auto"), Ok(MemoryBudget::Auto));
        assert_eq!(
            MemoryBudget::parse("4GiB"),
            Ok(MemoryBudget::Bytes(4 << 30))
        );
        assert_eq!(
            MemoryBudget::parse("512 MiB"),
            Ok(MemoryBudget::Bytes(512 << 20))
        );
        assert_eq!(
            MemoryBudget::parse("1.5GiB"),
            Ok(MemoryBudget::Bytes(3 << 29))
        );
        assert_eq!(
            MemoryBudget::parse("2GB"),
            Ok(MemoryBudget::Bytes(2_000_000_000))
        );
        assert_eq!(MemoryBudget::parse("1000"), Ok(MemoryBudget::Bytes(1000)));
        assert!(MemoryBudget::parse("4 lots")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(MemoryBudget::parse("0GiB").is_err());
        assert!(MemoryBudget::parse("GiB").is_err());
        // Written back as read (the run's config snapshot).
        for s in ["auto", "4GiB", "512MiB", "1000"] {
            assert_eq!(MemoryBudget::parse(s).unwrap().to_string(), s);
        }
        let v: MemoryBudget = serde_yaml_ng::from_str("8GiB").unwrap();
        assert_eq!(v, MemoryBudget::Bytes(8 << 30));
        let v: MemoryBudget = serde_yaml_ng::from_str("1048576").unwrap();
        assert_eq!(v, MemoryBudget::Bytes(1 << 20));
    }

    #[test]
    fn a_budget_lowers_batches_to_what_fits_and_never_below_one() {
        // 10 MiB kept and 2 MiB live per image: 20 MiB per gradient image, 4 MiB per forward image.
        let m = ActivationMemory {
            kept: 10 << 20,
            live: 2 << 20,
        };
        let p = plan_batches(64, 64, Some(m), 100 << 20);
        assert_eq!((p.batch_size, p.perturbation_batch_size), (5, 25));
        let p = plan_batches(4, 8, Some(m), 100 << 20);
        assert_eq!(
            (p.batch_size, p.perturbation_batch_size),
            (4, 8),
            "configured sizes that fit stay"
        );
        let p = plan_batches(64, 64, Some(m), 1 << 20);
        assert_eq!((p.batch_size, p.perturbation_batch_size), (1, 1));
        let p = plan_batches(64, 32, None, 1);
        assert_eq!((p.batch_size, p.perturbation_batch_size), (64, 32));
    }
}
