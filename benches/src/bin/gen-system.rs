//! Write the generated target-size configuration to a folder, for the end-to-end build
//! benchmark (`benches/build-noop.sh`).
//!
//! `gen-system DIR [trivial|autotools]`: `DIR/nexis.toml`, `DIR/modules/`, `DIR/pkgs/`.

#![allow(clippy::print_stderr)]

use std::path::Path;
use std::process::ExitCode;

use nexis_benches::{Recipes, Shape, large_system_with};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, recipes) = match args.as_slice() {
        [dir] => (dir, Recipes::Trivial),
        [dir, kind] if kind == "trivial" => (dir, Recipes::Trivial),
        [dir, kind] if kind == "autotools" => (dir, Recipes::Autotools),
        _ => {
            eprintln!("usage: gen-system DIR [trivial|autotools]");
            return ExitCode::FAILURE;
        }
    };
    let loader = large_system_with(Shape::TARGET, recipes);
    for (path, text) in loader.files() {
        let rel = path.strip_prefix("/bench").expect("generated under /bench");
        let dest = Path::new(dir).join(rel);
        let written = dest
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&dest, text));
        if let Err(e) = written {
            eprintln!("{}: {e}", dest.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
