//! What the benchmark compares against: the workload's floating-point operations (counted from the
//! layer list) and what libtorch really reaches on this machine (a large matmul and the model's own
//! convolutions at full batch), so that `bench` can say how close the audit is to the hardware floor.
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::attribution::{ExplainConfig, Method};
use crate::model::Classifier;

/// Model passes one method makes per image, as (forwards, backwards to the input). The model's
/// weights are frozen, so a backward computes input gradients only and costs about one forward.
pub fn passes(cfg: &ExplainConfig, method: Method) -> (f64, f64) {
    match method {
        Method::Gradient | Method::GuidedBackprop | Method::Gradcam => (1.0, 1.0),
        Method::IntegratedGradients => {
            let n = cfg.integrated_gradients.steps.unwrap_or(80) as f64;
            // + the two completeness forwards (input and baseline)
            (n + 2.0, n)
        }
        Method::Smoothgrad => {
            let n = cfg.smoothgrad.samples.unwrap_or(80) as f64;
            (n, n)
        }
        Method::Lime => (cfg.lime.samples.unwrap_or(1000) as f64, 0.0),
        Method::KernelShap => (cfg.kernel_shap.samples.unwrap_or(1000) as f64, 0.0),
    }
}

/// FLOPs one method costs per image on a model whose forward costs `forward` FLOPs.
pub fn method_flops(cfg: &ExplainConfig, method: Method, forward: f64) -> f64 {
    let (f, b) = passes(cfg, method);
    (f + b) * forward
}

/// Median GFLOP/s of `op` (which performs `flops` FLOPs) over `reps` timed calls after one warm-up.
fn gflops(flops: f64, reps: usize, mut op: impl FnMut()) -> f64 {
    op();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            op();
            flops / t0.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// What libtorch reaches here: a 2048^3 single-precision matmul, and the model's convolution layers at
/// batch `batch` run alone (the best case for the workload's own shapes).
pub struct Peak {
    pub matmul_gflops: f64,
    /// The same matmul in bfloat16 (AMX / AVX-512 BF16 where the CPU has them); NaN on a CPU without
    /// hardware bfloat16.
    pub matmul_bf16_gflops: f64,
    pub model_forward_gflops: f64,
}

pub fn measure_peak(model: &dyn Classifier, batch: i64) -> Peak {
    let _guard = tch::no_grad_guard();
    let dev = model.device();
    let n = 2048;
    let a = Tensor::randn([n, n], (Kind::Float, dev));
    let b = Tensor::randn([n, n], (Kind::Float, dev));
    let sync = |t: &Tensor| {
        // Reading one value waits for a GPU to finish; on the CPU it is free.
        let _ = t.double_value(&[0, 0]);
    };
    let matmul_gflops = gflops(2.0 * (n * n * n) as f64, 5, || sync(&a.matmul(&b)));
    // Without hardware bfloat16 libtorch falls back to a scalar reference gemm that takes minutes
    // for this size: not measured there (the audit keeps float32 on such a CPU anyway).
    let matmul_bf16_gflops = if dev.is_cuda() || crate::model::cpu_has_fast_bf16() {
        let (a16, b16) = (a.to_kind(Kind::BFloat16), b.to_kind(Kind::BFloat16));
        gflops(2.0 * (n * n * n) as f64, 5, || sync(&a16.matmul(&b16)))
    } else {
        f64::NAN
    };
    let spec = model.input();
    let x = Tensor::rand(
        [batch, spec.channels, spec.size, spec.size],
        (Kind::Float, dev),
    );
    let model_forward_gflops = match model.forward_flops() {
        Some(f) => gflops(f * batch as f64, 5, || {
            sync(&model.logits(&x).expect("the model ran at load time"))
        }),
        None => f64::NAN,
    };
    Peak {
        matmul_gflops,
        matmul_bf16_gflops,
        model_forward_gflops,
    }
}

/// The CPU in words for benchmark figures: its model name, core count and the instruction sets that
/// decide the floor (AVX2-only, AVX-512, AMX / AVX-512 BF16), from /proc/cpuinfo.
pub fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let name = field("model name");
    let flags = field("flags");
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let isa = if has("amx_bf16") {
        "AVX-512 + AMX bf16"
    } else if has("avx512_bf16") {
        "AVX-512 + AVX-512 BF16"
    } else if has("avx512f") {
        "AVX-512, no hardware bf16"
    } else if has("avx2") {
        "AVX2, no AVX-512, no hardware bf16"
    } else {
        "no AVX2"
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{}, {cores} cores available ({isa})",
        if name.is_empty() {
            "unknown model"
        } else {
            &name
        }
    )
}

/// The device in words for the benchmark header.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => format!("CPU, {} libtorch threads", tch::get_num_threads()),
        other => device_label(other),
    }
}

/// The device as people write it (`CPU`, `CUDA:0`, `MPS`), as the run record stores it.
pub fn device_label(d: Device) -> String {
    match d {
        Device::Cpu => "CPU".into(),
        Device::Cuda(n) => format!("CUDA:{n}"),
        Device::Mps => "MPS".into(),
        Device::Vulkan => "Vulkan".into(),
    }
}

/// Peak resident memory of this process in KiB (Linux `VmHWM`), if the system reports it.
pub fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{InputSpec, NativeCnn};

    #[test]
    fn flops_of_the_default_cnn_by_hand() {
        // cnn128: conv 1->16, conv 16->32 at 128^2; pool; conv 32->64, conv 64->64 at 64^2; pool;
        // dense 32*32*64 -> 64 -> 2.
        let specs = crate::model::preset_layers([16, 32, 64, 64], 64, 2);
        let m = NativeCnn::new(
            &specs,
            InputSpec {
                channels: 1,
                size: 128,
                classes: 2,
            },
            Device::Cpu,
        )
        .unwrap();
        let conv = |ci: f64, co: f64, hw: f64| 2.0 * ci * co * 9.0 * hw * hw;
        let want = conv(1.0, 16.0, 128.0)
            + conv(16.0, 32.0, 128.0)
            + conv(32.0, 64.0, 64.0)
            + conv(64.0, 64.0, 64.0)
            + 2.0 * 65536.0 * 64.0
            + 2.0 * 64.0 * 2.0;
        assert_eq!(crate::model::Classifier::forward_flops(&m), Some(want));
        assert!((want / 1e9 - 0.617).abs() < 0.001, "{want}");
    }
}
