//! `nexis store export|import|generate-key|sign|copy|substitute`: moving paths between
//! stores and binary caches, with keys and signatures.

use std::io::{BufReader, BufWriter, IsTerminal as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nexis_config::StoreSettings;
use nexis_fetch::Substituter;
use nexis_store::{Compression, PublicKey, SecretKey, Store, StorePath, Trust};

use super::{list, parse_all, valid};
use crate::context::Context;
use crate::error::Error;

/// `--compression`: the names of [`Compression`].
fn compression_parser() -> impl clap::builder::TypedValueParser<Value = Compression> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["zstd", "gzip", "none"]).map(|s| {
        s.parse::<Compression>()
            .expect("one of the possible values")
    })
}

#[derive(Debug, clap::Args)]
pub(super) struct ExportArgs {
    /// Store paths to export, with their closure
    #[arg(required = true)]
    paths: Vec<String>,
    /// How to compress the stream
    #[arg(long, default_value = "zstd", value_parser = compression_parser())]
    compression: Compression,
    /// Write the stream to FILE instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Which signatures to accept.
#[derive(Debug, clap::Args)]
pub(super) struct TrustArgs {
    /// Accept paths signed by this public key (repeatable)
    #[arg(long = "trusted-key", value_name = "NAME:KEY")]
    trusted_keys: Vec<String>,
    /// Accept paths that no trusted key signed (their content is still checked)
    #[arg(long)]
    no_require_sigs: bool,
}

impl TrustArgs {
    /// The keys given here and those of the configuration's `[store]` section;
    /// signatures are required unless `--no-require-sigs` or the configuration says
    /// otherwise.
    fn trust(&self, ctx: &Context) -> Result<Trust, Error> {
        self.trust_with(ctx, &super::settings(ctx)?.unwrap_or_default())
    }

    /// [`TrustArgs::trust`] with the `[store]` settings read already.
    fn trust_with(&self, ctx: &Context, settings: &StoreSettings) -> Result<Trust, Error> {
        let mut keys: Vec<PublicKey> = self
            .trusted_keys
            .iter()
            .map(|k| PublicKey::parse(k).map_err(|source| Error::TrustedKey { source }))
            .collect::<Result<_, _>>()?;
        for k in &settings.trusted_public_keys {
            keys.push(PublicKey::parse(&k.value).map_err(|source| Error::TrustedKey { source })?);
        }
        ctx.out.debug(
            1,
            &format!(
                "trusted keys: {}",
                keys.iter()
                    .map(PublicKey::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        Ok(Trust {
            keys,
            require_signatures: !self.no_require_sigs && settings.require_signatures,
        })
    }

    fn given(&self) -> bool {
        !self.trusted_keys.is_empty() || self.no_require_sigs
    }
}

#[derive(Debug, clap::Args)]
pub(super) struct ImportArgs {
    /// The export stream (zstd, gzip or uncompressed); `-` for standard input
    #[arg(default_value = "-", value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
}

#[derive(Debug, clap::Args)]
pub(super) struct GenerateKeyArgs {
    /// The key's name, e.g. `cache.example.org-1` (letters, digits, `.`, `_`, `-`)
    name: String,
    /// Write the secret key to FILE (mode 0600) instead of printing it
    #[arg(long, value_name = "FILE", requires = "out_public")]
    out_secret: Option<PathBuf>,
    /// Write the public key to FILE
    #[arg(long, value_name = "FILE", requires = "out_secret")]
    out_public: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(super) struct SignArgs {
    /// The secret key file (`nexis store generate-key`)
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Store paths to sign
    #[arg(required = true)]
    paths: Vec<String>,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("direction").required(true).args(["to", "from"])))]
pub(super) struct CopyArgs {
    /// Copy to this binary cache (`file:///DIR`), closure included
    #[arg(long, value_name = "URL")]
    to: Option<String>,
    /// Copy from this binary cache (`file:///DIR`, `http://…`, `https://…`) into the
    /// store, closure included
    #[arg(long, value_name = "URL")]
    from: Option<String>,
    /// With --to: sign what is copied with this secret key file
    #[arg(long, value_name = "FILE", requires = "to")]
    key: Option<PathBuf>,
    /// With --to: how to compress the archives
    #[arg(long, default_value = "zstd", value_parser = compression_parser(), requires = "to")]
    compression: Compression,
    #[command(flatten)]
    trust: TrustArgs,
    /// Store paths to copy
    #[arg(required = true)]
    paths: Vec<String>,
}

pub(super) fn export(ctx: &Context, store: &Store, args: &ExportArgs) -> Result<ExitCode, Error> {
    let paths = valid(store, &args.paths)?;
    let (target, exported) = if let Some(file) = &args.output {
        let write_error = |source| Error::Write {
            path: file.clone(),
            source,
        };
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".nexis-export-")
            .tempfile_in(dir)
            .map_err(write_error)?;
        // An export is no secret: readable like any file (temporary files start 0600).
        tmp.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .map_err(write_error)?;
        let exported = store
            .export(&paths, BufWriter::new(tmp.as_file()), args.compression)
            .map_err(|source| Error::Export {
                to: file.display().to_string(),
                source: Box::new(source),
            })?;
        tmp.as_file().sync_all().map_err(write_error)?;
        tmp.persist(file).map_err(|e| write_error(e.error))?;
        (file.display().to_string(), exported)
    } else {
        let stdout = std::io::stdout();
        if stdout.is_terminal() {
            return Err(Error::Usage {
                message: "not writing a binary export stream to a terminal; redirect \
                          standard output or use --output FILE"
                    .into(),
            });
        }
        let exported = store
            .export(&paths, BufWriter::new(stdout.lock()), args.compression)
            .map_err(|source| match source {
                nexis_store::ExportError::Write { source } => Error::Stdout { source },
                source => Error::Export {
                    to: "standard output".into(),
                    source: Box::new(source),
                },
            })?;
        ("standard output".to_owned(), exported)
    };
    ctx.out.status(
        "exported",
        &format!(
            "{} paths ({}) to {target}",
            exported.len(),
            args.compression
        ),
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn import(ctx: &Context, store: &Store, args: &ImportArgs) -> Result<ExitCode, Error> {
    let trust = args.trust.trust(ctx)?;
    let name = args.file.display().to_string();
    let import_error = |source| Error::Import {
        from: if name == "-" {
            "standard input".to_owned()
        } else {
            name.clone()
        },
        source: Box::new(source),
    };
    let paths = if args.file == Path::new("-") {
        store
            .import(std::io::stdin().lock(), &trust)
            .map_err(import_error)?
    } else {
        let file = std::fs::File::open(&args.file).map_err(|source| Error::Read {
            path: args.file.clone(),
            source,
        })?;
        store
            .import(BufReader::new(file), &trust)
            .map_err(import_error)?
    };
    list(ctx, paths.iter())
}

/// Read a secret key file.
fn read_secret_key(path: &Path) -> Result<SecretKey, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    SecretKey::parse(&text).map_err(|source| Error::Key {
        path: path.to_owned(),
        source,
    })
}

/// Create `path` (not overwriting anything) with `text` and `mode`.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                Error::AlreadyExists {
                    path: path.to_owned(),
                }
            } else {
                Error::Write {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
    f.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|source| Error::Write {
            path: path.to_owned(),
            source,
        })
}

pub(super) fn generate_key(ctx: &Context, args: &GenerateKeyArgs) -> Result<ExitCode, Error> {
    let key = SecretKey::generate(&args.name).map_err(|source| Error::GenerateKey { source })?;
    let public = key.public().to_string();
    if let (Some(secret_file), Some(public_file)) = (&args.out_secret, &args.out_public) {
        write_new(secret_file, &key.to_string(), 0o600)?;
        write_new(public_file, &public, 0o644)?;
        if ctx.json {
            ctx.out.json(&serde_json::json!({
                "name": args.name,
                "secret-key-file": secret_file,
                "public-key-file": public_file,
                "public-key": public,
            }))?;
        } else {
            ctx.out.data(&public)?;
        }
        ctx.out.status(
            "wrote",
            &format!(
                "secret key to {} and public key to {}",
                secret_file.display(),
                public_file.display()
            ),
        );
    } else if ctx.json {
        ctx.out.json(&serde_json::json!({
            "name": args.name,
            "secret-key": key.to_string(),
            "public-key": public,
        }))?;
    } else {
        ctx.out.data(&key.to_string())?;
        ctx.out.data(&public)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn sign(ctx: &Context, store: &Store, args: &SignArgs) -> Result<ExitCode, Error> {
    let key = read_secret_key(&args.key)?;
    let paths = valid(store, &args.paths)?;
    let mut out = Vec::new();
    let mut added = 0;
    for p in &paths {
        let signature = store
            .with_db(|db| {
                let info = db.query(p)?.ok_or_else(|| nexis_store::DbError::NotValid {
                    path: p.clone(),
                    db: store.state_dir().join("db/db.sqlite"),
                })?;
                let signature = key.sign(&info);
                added += db.add_signatures(p, std::slice::from_ref(&signature))?;
                Ok(signature)
            })
            .map_err(|e: nexis_store::DbError| Error::Store { source: e.into() })?;
        out.push(serde_json::json!({ "path": p.to_string(), "signature": signature }));
    }
    if ctx.json {
        ctx.out.json(&serde_json::Value::Array(out))?;
    }
    ctx.out.status(
        "signed",
        &format!(
            "{} paths with {} ({added} new signatures)",
            paths.len(),
            key.name()
        ),
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub(super) struct SubstituteArgs {
    #[command(flatten)]
    trust: TrustArgs,
    /// Store paths to make valid, with their closure
    #[arg(required = true)]
    paths: Vec<String>,
}

/// The directory of a `file:///DIR` binary cache URL (to write to).
pub(super) fn cache_dir(url: &str) -> Result<PathBuf, Error> {
    if let Some(path) = url.strip_prefix("file://") {
        if path.starts_with('/') {
            return Ok(PathBuf::from(path));
        }
        return Err(Error::Usage {
            message: format!("`{url}`: a file URL needs an absolute path: file:///DIR"),
        });
    }
    let message = if url.starts_with("http://") || url.starts_with("https://") {
        format!(
            "`{url}`: writing to an HTTP binary cache is not supported; copy to file:///DIR \
             and serve that directory"
        )
    } else {
        format!("`{url}` is not a binary cache URL; use file:///DIR")
    };
    Err(Error::Usage { message })
}

pub(super) fn copy(ctx: &Context, store: &Store, args: &CopyArgs) -> Result<ExitCode, Error> {
    if let Some(url) = &args.to {
        if args.trust.given() {
            return Err(Error::Usage {
                message: "--trusted-key and --no-require-sigs apply to --from".into(),
            });
        }
        let dir = cache_dir(url)?;
        let paths = valid(store, &args.paths)?;
        let key = args.key.as_deref().map(read_secret_key).transpose()?;
        let report = store
            .copy_to_cache(&paths, &dir, key.as_ref(), args.compression)
            .map_err(|source| Error::CopyTo {
                url: url.clone(),
                source: Box::new(source),
            })?;
        if ctx.json {
            let names = |v: &[StorePath]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
            ctx.out.json(&serde_json::json!({
                "copied": names(&report.copied),
                "skipped": names(&report.skipped),
            }))?;
        } else {
            for p in &report.copied {
                ctx.out.data(&p.to_string())?;
            }
        }
        ctx.out.status(
            "copied",
            &format!(
                "{} paths to {url}; {} were there already",
                report.copied.len(),
                report.skipped.len()
            ),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let url = args.from.as_ref().expect("clap requires --to or --from");
    let paths = parse_all(&args.paths)?;
    let trust = args.trust.trust(ctx)?;
    let copy_error = |source| Error::CopyFrom {
        url: url.clone(),
        source: Box::new(source),
    };
    // Every path asked for must be there: refused before any archive is read otherwise.
    let report = Substituter::new(std::slice::from_ref(url))
        .map_err(copy_error)?
        .require_all(true)
        .substitute(store, &paths, &trust, &|w| ctx.out.warn(w))
        .map_err(copy_error)?;
    ctx.out.debug(
        1,
        &format!("{} paths copied from {url}", report.substituted.len()),
    );
    list(ctx, report.substituted.iter())
}

/// `nexis store substitute PATH…`: from the configuration's `substituters`, in order.
pub(super) fn substitute(
    ctx: &Context,
    store: &Store,
    args: &SubstituteArgs,
) -> Result<ExitCode, Error> {
    let paths = parse_all(&args.paths)?;
    let settings = super::settings(ctx)?.unwrap_or_default();
    let trust = args.trust.trust_with(ctx, &settings)?;
    let urls: Vec<String> = settings.substituters.into_iter().map(|u| u.value).collect();
    if urls.is_empty() {
        return Err(Error::Usage {
            message: "no substituters configured: list binary caches in `substituters` of \
                      the configuration's [store] section, or use `nexis store copy --from URL`"
                .into(),
        });
    }
    let substitute_error = |source| Error::Substitute {
        caches: urls.join(", "),
        source: Box::new(source),
    };
    let report = Substituter::new(&urls)
        .map_err(substitute_error)?
        .substitute(store, &paths, &trust, &|w| ctx.out.warn(w))
        .map_err(substitute_error)?;
    let names = |v: &[StorePath]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    if ctx.json {
        ctx.out.json(&serde_json::json!({
            "substituted": names(&report.substituted),
            "missing": names(&report.missing),
            "incomplete": names(&report.incomplete),
        }))?;
    } else {
        for p in &report.substituted {
            ctx.out.data(&p.to_string())?;
        }
        for p in &report.missing {
            ctx.out.warn(&format!("{p} is in no binary cache"));
        }
        for p in &report.incomplete {
            ctx.out.warn(&format!(
                "{p} was not substituted: its closure needs a path that is in no binary cache"
            ));
        }
    }
    ctx.out.status(
        "substituted",
        &format!(
            "{} paths; {} not in any cache",
            report.substituted.len(),
            report.missing.len()
        ),
    );
    // Every path asked for is valid unless something was missing.
    Ok(if report.missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
