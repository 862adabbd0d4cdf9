//! Embeds the repository's `catalog/` manifests, so `citybrain serve --demo` works from any
//! directory with nothing but the binary.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"))
        .join("../../catalog")
        .canonicalize()
        .expect("the catalog/ directory exists beside crates/");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let mut src = String::from(
        "/// The manifests of `catalog/`, as `(path, text)`.\npub(crate) const EMBEDDED_CATALOG: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let label = f
            .strip_prefix(&root)
            .expect("below root")
            .display()
            .to_string();
        src.push_str(&format!(
            "    ({label:?}, include_str!({:?})),\n",
            f.display().to_string()
        ));
    }
    src.push_str("];\n");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("embedded_catalog.rs");
    std::fs::write(out, src).expect("OUT_DIR is writable");
}
