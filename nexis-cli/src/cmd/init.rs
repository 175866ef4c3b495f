//! `nexis init`: a commented starter configuration and one local package recipe.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::context::Context;
use crate::error::Error;

/// Create DIR/nexis.toml, a commented starter configuration, and a sample recipe in
/// DIR/packages
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to create the configuration (created if missing)
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// The starter configuration. Its `packages/` folder is the input `local`.
pub(crate) const CONFIG: &str = r#"# The whole machine, declared. `nexis check` validates this file, `nexis eval`
# shows what it resolves to, and `nexis config set KEY VALUE` edits it without
# touching comments. `nexis schema config` prints a JSON Schema for editors.

# Where package recipes come from: name = reference. A reference is a local
# folder (`path:…`), a git repository (`git+https://…?ref=main`) or a tarball
# (`https://…/x.tar.gz`); recipes are its `packages/NAME.toml` files, or its
# own `NAME.toml` files when it has no `packages/` folder. `local` is the
# `packages` folder next to this file, so `packages/hello.toml` is the package
# `local#hello`.
[inputs]
local = "path:./packages"

[system]
hostname = "nexis"
timezone = "UTC"
locale = "en_US.UTF-8"
keymap = "us"

[boot]
loader = "grub"
# How many system generations keep a boot entry to roll back to.
keep-generations = 10

[packages]
# `name`, `input#name`, optionally with a version requirement: `name@>=2`.
install = [
    "local#hello",
]

# A login for the administrator. Members of `wheel` may become root.
[users.admin]
description = "Administrator"
groups = ["wheel"]
# password-hash = "$6$…"          # from `mkpasswd -m sha-512`
# authorized-keys = ["ssh-ed25519 AAAA… admin@laptop"]

# Files under /etc are declared here; the rest of /etc is immutable.
[files."/etc/motd"]
text = "Welcome to ${system.hostname}, running NexisOS.\n"
mode = "0644"

# Dinit services. `${pkgs.hello}` is the installed path of the package.
[services.hello]
type = "scripted"
command = "${pkgs.hello}/bin/hello"
restart = false
"#;

/// The sample recipe, `packages/hello.toml`.
pub(crate) const RECIPE: &str = r#"# A package recipe. `nexis schema recipe` prints its JSON Schema.
name = "hello"
version = "1.0.0"
description = "Prints a greeting"
license = "MIT"

[build]
# autotools | make | cmake | meson | cargo | script
system = "script"
# Runs in the build sandbox; `$out` is the package's directory in the store.
script = '''
mkdir -p "$out/bin"
cat > "$out/bin/hello" <<'EOF'
#!/bin/sh
echo "Hello from NexisOS"
EOF
chmod +x "$out/bin/hello"
'''
"#;

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<ExitCode, Error> {
    let dir = &args.dir;
    create_dir(dir)?;
    let config = dir.join("nexis.toml");
    create_new(&config, CONFIG)?;
    ctx.out.status("created", &config.display().to_string());
    let packages = dir.join("packages");
    create_dir(&packages)?;
    let recipe = packages.join("hello.toml");
    match create_new(&recipe, RECIPE) {
        Ok(()) => ctx.out.status("created", &recipe.display().to_string()),
        Err(Error::AlreadyExists { .. }) => ctx
            .out
            .note(&format!("kept the existing {}", recipe.display())),
        Err(e) => return Err(e),
    }
    let check = if dir == Path::new(".") {
        "nexis check".to_owned()
    } else {
        format!("nexis check --config {}", config.display())
    };
    ctx.out.note(&format!("edit it, then run `{check}`"));
    Ok(ExitCode::SUCCESS)
}

fn create_dir(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|source| Error::Write {
        path: path.into(),
        source,
    })
}

/// Write a file that must not exist yet.
fn create_new(path: &Path, text: &str) -> Result<(), Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                Error::AlreadyExists { path: path.into() }
            } else {
                Error::Write {
                    path: path.into(),
                    source,
                }
            }
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::Write {
            path: path.into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use nexis_config::MemoryLoader;

    use super::*;

    #[test]
    fn the_starter_configuration_evaluates() {
        let loader = MemoryLoader::new()
            .with("/cfg/nexis.toml", CONFIG)
            .with("/cfg/packages/hello.toml", RECIPE);
        let evaluation = match nexis_config::evaluate(&loader, Path::new("/cfg/nexis.toml")) {
            Ok(e) => e,
            Err(e) => panic!("{}", e.render(false)),
        };
        assert_eq!(evaluation.spec.system.hostname.value, "nexis");
        let hello = evaluation
            .packages
            .get("local#hello")
            .expect("hello resolves");
        assert_eq!(hello.version.to_string(), "1.0.0");
        assert!(evaluation.spec.users.keys().any(|u| u.value == "admin"));
    }
}
