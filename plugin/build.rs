//! Embeds every ONNX model in `models/`: writes `EMBEDDED_MODELS`, the list
//! of `(name, bytes)` that `engine::models` includes.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // Read at run time: a build script binary reused from a shared target
    // folder must embed this checkout's models, not those of the first.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest_dir).join("../models");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut models: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("the models folder is readable")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_stem()?.to_str()?.to_string();
            let absolute = path.canonicalize().ok()?.to_str()?.to_string();
            (path.extension()? == "onnx").then_some((name, absolute))
        })
        .collect();
    models.sort();
    let mut code = String::from("/// Embedded ONNX files by name, sorted.\n");
    code += "pub const EMBEDDED_MODELS: &[(&str, &[u8])] = &[\n";
    for (name, path) in &models {
        writeln!(code, "    ({name:?}, include_bytes!({path:?})),").expect("writing a string");
    }
    code += "];\n";
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("models.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
