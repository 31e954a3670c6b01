//! Compiles the C++ shim (`shim/`: custom autograd functions, c10d process groups, fused
//! AdamW, oneDNN matrix products, fused SwiGLU and RMSNorm) against the same libtorch
//! headers torch-sys uses, and bakes libtorch's directory into every binary of this package
//! as an rpath, so `tunebook` and the tests run without LD_LIBRARY_PATH.
use std::path::PathBuf;

fn main() {
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports its libtorch lib dir"));
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    compile_shim(&lib);
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // Without --no-as-needed the linker drops libtorch_cuda (nothing references it
        // directly) and CUDA reports unavailable at run time.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-ltorch,--as-needed");
    }
}

fn compile_shim(lib: &std::path::Path) {
    let include = lib.parent().expect("libtorch lib dir has a parent").join("include");
    let sources = ["shim/autograd.cpp", "shim/distributed.cpp", "shim/optim.cpp", "shim/matmul.cpp", "shim/fused.cpp"];
    for source in sources.iter().chain(&["shim/common.h"]) {
        println!("cargo:rerun-if-changed={source}");
    }
    let mut build = cc::Build::new();
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // NCCL process groups: ProcessGroupNCCL.hpp needs the CUDA runtime and NCCL headers,
        // which the torch wheel's nvidia-* dependencies (and scripts/requirements.txt) ship.
        let nvidia = include.parent().and_then(|torch| torch.parent()).expect("torch sits in site-packages").join("nvidia");
        build
            .define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None)
            .define("TUNEBOOK_NCCL", None)
            .include(nvidia.join("cu13/include"))
            .include(nvidia.join("nccl/include"));
    }
    build
        .cpp(true)
        .files(sources)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        // The PyPI wheels are built with the new libstdc++ ABI, as torch-sys assumes.
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // ProcessGroupGloo.hpp is guarded by this; the wheel's libtorch_cpu has Gloo built in.
        .define("USE_C10D_GLOO", None)
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .opt_level(2)
        .compile("tunebook_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
