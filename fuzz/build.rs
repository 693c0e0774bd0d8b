//! The library is `../src/lib.rs`, which serves `openapi.min.json` from `OUT_DIR`
//! (written by the component's `../build.rs`). The fuzz targets never serve it, so the
//! readable file is copied as it is, without the component's minifying.

use std::{env, fs, path::Path};

fn main() {
    let source = "../src/openapi.json";
    println!("cargo:rerun-if-changed={source}");
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("openapi.min.json");
    fs::copy(source, out).expect("copying ../src/openapi.json into OUT_DIR");
}
