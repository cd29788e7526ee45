//! Lets the binary and the test executables find libtorch without LD_LIBRARY_PATH: adds an rpath to the
//! real torch/lib folder that scripts/setup-libtorch.sh recorded in $LIBTORCH/rpath.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let marker = PathBuf::from(&libtorch).join("rpath");
        println!("cargo:rerun-if-changed={}", marker.display());
        let lib_dir = std::fs::read_to_string(&marker)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| format!("{libtorch}/lib"));
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // Keep libtorch_cuda linked although no symbol of it is referenced directly.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
