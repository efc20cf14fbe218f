//! Provenance: an in-toto Statement v1 whose predicate is SLSA Provenance
//! v1. The subject is the image (its manifest digest); the build type says
//! trace, slim or pack; the external parameters are the command, the jail
//! config and the environment; the resolved dependencies are the base image
//! (slim) and the root's packages as purls; the file-set digest is a
//! byproduct.

use serde_json::{json, Value};

use super::{AttestError, Evidence};
use crate::digest::Digest;

/// The build type URI of a jail build kind.
pub fn build_type(e: &Evidence) -> String {
    format!(
        "https://jail.invalid/build-types/{}/v1",
        e.build.kind.as_str()
    )
}

/// The statement, as pretty JSON.
pub fn statement(
    e: &Evidence,
    name: &str,
    manifest_digest: &Digest,
    fileset_digest: &Digest,
) -> Result<Vec<u8>, AttestError> {
    let mut deps: Vec<Value> = Vec::new();
    if let Some(base) = &e.origin.base_image {
        let hex = base.strip_prefix("sha256:").unwrap_or(base);
        deps.push(json!({"name": "base-image", "digest": {"sha256": hex}}));
    }
    for p in &e.packages {
        deps.push(json!({
            "uri": p.purl(&e.origin),
            "name": p.name,
            "annotations": {
                "version": p.version,
                "partial": p.partial(),
            },
        }));
    }
    let v = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{
            "name": name,
            "digest": {"sha256": manifest_digest.hex()},
        }],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": build_type(e),
                "externalParameters": {
                    "commands": e.build.commands,
                    "config": e.build.config,
                    "env": e.image.env,
                    "image": {
                        "entrypoint": e.image.entrypoint,
                        "cmd": e.image.cmd,
                        "user": e.image.user,
                        "workingDir": e.image.working_dir,
                    },
                    "packageDb": e.build.package_db,
                },
                "internalParameters": {
                    "jailCommand": e.image.command,
                    "compression": e.image.compression,
                    "sourceDateEpoch": e.image.source_date_epoch,
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {
                    "id": "https://jail.invalid/builder",
                    "version": {"jail": e.jail},
                },
                "metadata": {},
                "byproducts": [{
                    "name": "fileset",
                    "digest": {"sha256": fileset_digest.hex()},
                }],
            },
        },
    });
    let mut out = serde_json::to_vec_pretty(&v).map_err(|err| AttestError::Json {
        what: "the provenance",
        msg: err.to_string(),
    })?;
    out.push(b'\n');
    Ok(out)
}
