//! Bakes libtorch's directory into every binary of this package as an rpath, so
//! `tunebook` and the tests run without LD_LIBRARY_PATH.
fn main() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports its libtorch lib dir");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // Without --no-as-needed the linker drops libtorch_cuda (nothing references it
        // directly) and CUDA reports unavailable at run time.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-ltorch,--as-needed");
    }
}
