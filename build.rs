//! Minifies `src/openapi.json` into the build's output directory: the readable file is
//! what people edit and review; the component serves (and carries) the compact one.

use std::{env, fs, path::Path};

fn main() {
    let source = "src/openapi.json";
    println!("cargo:rerun-if-changed={source}");
    let text = fs::read_to_string(source).expect("src/openapi.json is readable");
    let document: serde_json::Value = serde_json::from_str(&text).expect("src/openapi.json is valid JSON");
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("openapi.min.json");
    fs::write(out, serde_json::to_vec(&document).expect("serialising JSON")).expect("OUT_DIR is writable");
}
