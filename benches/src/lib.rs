//! Benchmark support: a generator for large, realistic configurations.
//!
//! [`large_system`] builds, in memory, a configuration of many modules, one input with
//! many recipes (a layered dependency graph), services with dependencies and `${pkgs…}`
//! references, and users with groups and home files. The criterion bench
//! (`benches/eval.rs`) and the `eval-peak` binary evaluate it.

use std::fmt::Write as _;

use nexis_config::MemoryLoader;

/// Sizes of the generated system.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Module files imported by the root.
    pub modules: usize,
    /// Recipes in the single input.
    pub packages: usize,
    /// Average number of dependencies per package.
    pub deps: usize,
    /// Services.
    pub services: usize,
    /// Users.
    pub users: usize,
}

impl Shape {
    /// The size the foundation issue sets as the target: 50 modules, 1,000 packages with
    /// 5 dependencies each on average, 200 services, 50 users.
    pub const TARGET: Shape = Shape {
        modules: 50,
        packages: 1000,
        deps: 5,
        services: 200,
        users: 50,
    };
}

/// A small deterministic pseudo-random generator (the same system every run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from((self.0 >> 33) % (n.max(1) as u64)).expect("fits")
    }
}

/// The root module's path inside the generated tree.
pub const ROOT: &str = "/bench/nexis.toml";

/// How the generated recipes build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipes {
    /// Like a distribution's: a tarball source and autotools (for evaluation; they do
    /// not build here).
    Autotools,
    /// No source; a script that writes one file into `$out` with the paths of its
    /// dependencies (real, sandboxed builds taking milliseconds).
    Trivial,
}

/// Generate the configuration, with distribution-like recipes.
pub fn large_system(shape: Shape) -> MemoryLoader {
    large_system_with(shape, Recipes::Autotools)
}

/// Generate the configuration with recipes of the given kind.
pub fn large_system_with(shape: Shape, recipes: Recipes) -> MemoryLoader {
    let mut rng = Lcg(42);
    let mut loader = MemoryLoader::new();

    // Recipes: package i depends on packages below it, so the graph is acyclic and
    // layered like a distribution (many leaves on a few base libraries).
    for i in 0..shape.packages {
        let mut deps = std::collections::BTreeSet::new();
        if i > 0 {
            let n = rng.below(shape.deps * 2 + 1).min(i);
            for _ in 0..n {
                // Favour low-numbered (base) packages.
                let j = rng.below(i).min(rng.below(i));
                deps.insert(j);
            }
        }
        let (build, runtime): (Vec<_>, Vec<_>) = deps.iter().partition(|d| *d % 3 != 0);
        let list = |v: &[&usize]| {
            v.iter()
                .map(|d| format!("\"pkg{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = String::new();
        let version = format!("{}.{}.{}", 1 + i % 4, i % 10, i % 7);
        match recipes {
            Recipes::Autotools => {
                let _ = write!(
                    text,
                    "name = \"pkg{i}\"\nversion = \"{version}\"\ndescription = \"generated package {i}\"\nlicense = \"MIT\"\n\n\
                     [source]\nurl = \"https://example.org/pkg{i}-1.0.tar.gz\"\nhash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"\n\n\
                     [build]\nsystem = \"autotools\"\ndeps = [{}]\nruntime-deps = [{}]\nflags = [\"--disable-static\", \"--enable-shared\"]\n\n\
                     [build.env]\nCFLAGS = \"-O2\"\n",
                    list(&build),
                    list(&runtime)
                );
            }
            Recipes::Trivial => {
                let _ = write!(
                    text,
                    "name = \"pkg{i}\"\nversion = \"{version}\"\ndescription = \"generated package {i}\"\n\n\
                     [build]\nsystem = \"script\"\ndeps = [{}]\nruntime-deps = [{}]\n\
                     script = \"mkdir -p $out/share && echo pkg{i} $PATH > $out/share/pkg{i}\"\n",
                    list(&build),
                    list(&runtime)
                );
            }
        }
        loader.insert(format!("/bench/pkgs/packages/pkg{i}.toml"), text);
    }

    // Root module.
    let mut root = String::from("imports = [\n");
    for m in 0..shape.modules {
        let _ = writeln!(root, "  \"modules/m{m:02}.toml\",");
    }
    root.push_str(
        "]\n\n[inputs]\nmain = \"path:./pkgs\"\n\n[system]\nhostname = \"bench\"\ntimezone = \"UTC\"\n\n\
         [boot]\nkernel-params = [\"quiet\"]\n\n[groups.staff]\ngid = 2000\n",
    );
    if recipes == Recipes::Trivial {
        // The builds run the host's shell.
        root.push_str(
            "\n[build]\nextra-sandbox-paths = [\"/usr\", \"/bin\", \"/lib\", \"/lib64\"]\n",
        );
    }
    loader.insert(ROOT, root);

    // Modules share out the users, services, files and installed packages.
    for m in 0..shape.modules {
        let mut text = format!("# generated module {m}\n\n[packages]\ninstall = [");
        for k in 0..shape.packages / shape.modules / 4 {
            let p = shape.packages - 1 - (m + k * shape.modules) % shape.packages;
            let _ = write!(text, "\"pkg{p}\", ");
        }
        text.push_str("]\n\n[boot]\nkernel-params = [\"quiet\"]\n\n");
        for u in (m..shape.users).step_by(shape.modules) {
            let _ = write!(
                text,
                "[users.user{u}]\nuid = {}\ngroups = [\"staff\", \"wheel\"]\ndescription = \"User {u}\"\n\
                 packages = [\"pkg{}\"]\n\n[users.user{u}.files.\".config/app/config.toml\"]\n\
                 text = \"owner = ${{system.hostname}}\\n\"\n\n",
                1000 + u,
                rng.below(shape.packages)
            );
        }
        for s in (m..shape.services).step_by(shape.modules) {
            let _ = write!(
                text,
                "[services.svc{s}]\ncommand = \"${{pkgs.pkg{}}}/bin/daemon --id {s}\"\nrestart = \"on-failure\"\n",
                rng.below(shape.packages)
            );
            if s > 0 {
                let _ = write!(
                    text,
                    "depends-on = [\"svc{}\"]\nwaits-for = [\"svc{}\"]\n",
                    rng.below(s),
                    rng.below(s)
                );
            }
            let _ = write!(
                text,
                "[services.svc{s}.environment]\nLANG = \"C.UTF-8\"\n\n[files.\"/etc/svc{s}/config\"]\n\
                 text = \"host = ${{system.hostname}}\\n\"\nmode = \"0640\"\n\n"
            );
        }
        let _ = write!(text, "[defaults.system]\nlocale = \"en_US.UTF-8\"\n");
        loader.insert(format!("/bench/modules/m{m:02}.toml"), text);
    }
    loader
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_system_evaluates() {
        let shape = Shape {
            modules: 5,
            packages: 100,
            deps: 5,
            services: 20,
            users: 5,
        };
        let loader = large_system(shape);
        let eval = match nexis_config::evaluate(&loader, ROOT.as_ref()) {
            Ok(e) => e,
            Err(e) => panic!("{}", e.render(false)),
        };
        assert_eq!(eval.modules.len(), 6);
        assert_eq!(eval.spec.services.len(), 20);
        assert!(eval.packages.len() > 20);
    }
}
