//! Compiles the C++ shim (`shim/`: custom autograd functions, c10d process groups) against
//! the same libtorch headers torch-sys uses, and bakes libtorch's directory into every
//! binary of this package as an rpath, so `tunebook` and the tests run without
//! LD_LIBRARY_PATH.
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
    let sources = ["shim/autograd.cpp"];
    for source in sources {
        println!("cargo:rerun-if-changed={source}");
    }
    cc::Build::new()
        .cpp(true)
        .files(sources)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        // The PyPI wheels are built with the new libstdc++ ABI, as torch-sys assumes.
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .opt_level(2)
        .compile("tunebook_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
