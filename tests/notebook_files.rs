//! The tutorial notebooks as committed: small enough to read on a code host, outputs included
//! (refreshed by scripts/publish_notebooks.py from the executed copies), no absolute paths
//! from the machine that ran them, and bound to the tunebook kernel.
use std::path::PathBuf;
use tunebook_tests::workspace;

const MAX_BYTES: u64 = 400 * 1024;

fn notebooks() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(workspace().join("notebooks"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "ipynb"))
        .collect();
    found.sort();
    found
}

#[test]
fn the_seven_tutorials_are_there_in_order() {
    let names: Vec<String> = notebooks().iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    let numbers: Vec<&str> = names.iter().map(|n| &n[..2]).collect();
    assert_eq!(numbers, ["01", "02", "03", "04", "05", "06", "07"], "{names:?}");
}

#[test]
fn notebooks_are_small_carry_outputs_and_name_no_absolute_paths() {
    for path in notebooks() {
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= MAX_BYTES, "{} is {size} bytes (limit {MAX_BYTES}): trim its outputs", path.display());
        let text = std::fs::read_to_string(&path).unwrap();
        for prefix in ["/root/", "/home/", "/tmp/", "/work/", "/Users/"] {
            assert!(!text.contains(prefix), "{} names an absolute path ({prefix}...)", path.display());
        }
        let notebook: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(notebook["metadata"]["kernelspec"]["name"], "tunebook", "{}", path.display());
        let cells = notebook["cells"].as_array().unwrap();
        let code: Vec<_> = cells.iter().filter(|c| c["cell_type"] == "code").collect();
        let with_outputs = code.iter().filter(|c| c["outputs"].as_array().is_some_and(|o| !o.is_empty())).count();
        assert!(with_outputs * 2 >= code.len(), "{}: only {with_outputs} of {} code cells show outputs", path.display(), code.len());
        let errors = code.iter().flat_map(|c| c["outputs"].as_array().unwrap()).filter(|o| o["output_type"] == "error").count();
        assert_eq!(errors, 0, "{} was committed with an error output", path.display());
    }
}
