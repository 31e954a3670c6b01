//! Bakes libtorch's directory into the test binaries as an rpath (see lib/build.rs).
fn main() {
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports its libtorch lib dir");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
}
