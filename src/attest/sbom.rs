//! SBOMs from the embedded manifest: SPDX 2.3 JSON and CycloneDX 1.6 JSON.
//!
//! Packages carry their purl and the licenses of their copyright file;
//! every file carries its sha256 (and SPDX's required sha1) and the package
//! that contains it. A package with only some files kept says so (SPDX:
//! a comment; CycloneDX: the `jail:partial` property), never passed off
//! as whole. Deterministic: the time is `SOURCE_DATE_EPOCH` (or 1970), the
//! document namespace and serial number come from the file-set digest.

use std::io::Read;
use std::path::Path;

use serde_json::{json, Value};
use sha1::Digest as _;

use super::{AttestError, Evidence, PackageRecord};
use crate::digest::Digest;
use crate::image::rfc3339;
use crate::resolve::FileType;

/// Which SBOM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON.
    Spdx,
    /// CycloneDX 1.6 JSON.
    Cyclonedx,
}

impl SbomFormat {
    /// From the file name: `*.spdx.json` or `*.cdx.json`.
    pub fn of_name(path: &Path) -> Option<SbomFormat> {
        let n = path.file_name()?.to_str()?.to_ascii_lowercase();
        if n.ends_with(".spdx.json") || n.ends_with(".spdx") {
            Some(SbomFormat::Spdx)
        } else if n.ends_with(".cdx.json") || n.ends_with(".cyclonedx.json") {
            Some(SbomFormat::Cyclonedx)
        } else {
            None
        }
    }
}

/// Reads the content of an image path (for SPDX's sha1).
pub trait Content {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn Read + '_>>;
}

/// Files under a directory (an unpacked image, or the build's root).
pub struct DirContent<'a>(pub &'a Path);

impl Content for DirContent<'_> {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn Read + '_>> {
        let rel = path.strip_prefix("/").unwrap_or(path);
        Ok(Box::new(std::fs::File::open(self.0.join(rel))?))
    }
}

/// The files of a file set: generated content, or the file in its root.
pub struct FileSetContent<'a>(pub &'a crate::fileset::FileSet);

impl Content for FileSetContent<'_> {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn Read + '_>> {
        match self.0.get(path).and_then(|e| e.content.as_deref()) {
            Some(c) => Ok(Box::new(c.as_bytes())),
            None => Ok(Box::new(std::fs::File::open(self.0.host_path(path))?)),
        }
    }
}

/// The files of a file set, and below them those of the `--base` unpacked
/// at the second path (the base's paths the file set does not have).
pub struct OnBase<'a>(pub &'a crate::fileset::FileSet, pub Option<&'a Path>);

impl Content for OnBase<'_> {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn Read + '_>> {
        match (self.0.get(path), self.1) {
            (Some(e), _) => match e.content.as_deref() {
                Some(c) => Ok(Box::new(c.as_bytes())),
                None => Ok(Box::new(std::fs::File::open(self.0.host_path(path))?)),
            },
            (None, Some(base)) => {
                let rel = path.strip_prefix("/").unwrap_or(path);
                Ok(Box::new(std::fs::File::open(base.join(rel))?))
            }
            (None, None) => Ok(Box::new(std::fs::File::open(self.0.host_path(path))?)),
        }
    }
}

/// The SBOM of the image `evidence` describes, as pretty JSON. `name` names
/// the image (its reference); `digest` identifies it (the file-set digest).
pub fn sbom(
    evidence: &Evidence,
    format: SbomFormat,
    name: &str,
    digest: &Digest,
    content: &dyn Content,
) -> Result<Vec<u8>, AttestError> {
    let v = match format {
        SbomFormat::Spdx => spdx(evidence, name, digest, content)?,
        SbomFormat::Cyclonedx => cyclonedx(evidence, name, digest),
    };
    let mut out = serde_json::to_vec_pretty(&v).map_err(|e| AttestError::Json {
        what: "the SBOM",
        msg: e.to_string(),
    })?;
    out.push(b'\n');
    Ok(out)
}

fn created(e: &Evidence) -> String {
    rfc3339(e.image.source_date_epoch.unwrap_or(0))
}

/// Debian's license short names that are SPDX identifiers once renamed.
fn spdx_license(name: &str) -> Option<&'static str> {
    Some(match name {
        "GPL-2" => "GPL-2.0-only",
        "GPL-2+" => "GPL-2.0-or-later",
        "GPL-3" => "GPL-3.0-only",
        "GPL-3+" => "GPL-3.0-or-later",
        "LGPL-2" => "LGPL-2.0-only",
        "LGPL-2+" => "LGPL-2.0-or-later",
        "LGPL-2.1" => "LGPL-2.1-only",
        "LGPL-2.1+" => "LGPL-2.1-or-later",
        "LGPL-3" => "LGPL-3.0-only",
        "LGPL-3+" => "LGPL-3.0-or-later",
        "BSD-2-clause" | "BSD-2-Clause" => "BSD-2-Clause",
        "BSD-3-clause" | "BSD-3-Clause" => "BSD-3-Clause",
        "BSD-4-clause" | "BSD-4-Clause" => "BSD-4-Clause",
        "MIT" | "Expat" => "MIT",
        "Zlib" | "zlib" => "Zlib",
        "Apache-2.0" => "Apache-2.0",
        "ISC" => "ISC",
        "PSF-2" => "PSF-2.0",
        "public-domain" => return None,
        _ => return None,
    })
}

/// A LicenseRef for a Debian name SPDX does not know.
fn license_ref(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("LicenseRef-debian-{clean}")
}

/// A package's licenses as one SPDX expression. Each copyright paragraph's
/// `License:` value is itself a DEP-5 expression ("GPL-2+ or Artistic",
/// "GPL-2+ or Artistic, and BSD-3-clause"); its `or`/`and` stay as they are
/// (`, and`/`, or` close the group before them). The paragraphs are joined
/// with AND: the files kept may fall under any of them.
fn spdx_expression(p: &PackageRecord, refs: &mut Vec<(String, String)>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for l in &p.licenses {
        let Some(e) = dep5_expression(l, refs) else {
            continue;
        };
        // An expression of ANDs only adds its terms one by one.
        let terms: Vec<String> = if e.contains(" OR ") {
            vec![format!("({e})")]
        } else {
            e.split(" AND ")
                .map(|t| t.replace(['(', ')'], ""))
                .collect()
        };
        for t in terms {
            if !parts.contains(&t) {
                parts.push(t);
            }
        }
    }
    match parts.len() {
        0 => "NOASSERTION".into(),
        // A lone expression needs no parentheses.
        1 => parts[0]
            .strip_prefix('(')
            .and_then(|e| e.strip_suffix(')'))
            .unwrap_or(&parts[0])
            .to_string(),
        _ => {
            parts.sort();
            parts.join(" AND ")
        }
    }
}

/// One DEP-5 `License:` value as an SPDX expression, or None when it names
/// nothing. A license with an exception ("GPL-2+ with OpenSSL exception")
/// becomes one LicenseRef: SPDX 2.3 has no way to name an exception that is
/// not on its list.
fn dep5_expression(value: &str, refs: &mut Vec<(String, String)>) -> Option<String> {
    let mut expr: Option<String> = None;
    for (i, clause) in value.split(',').enumerate() {
        let mut words: Vec<&str> = clause.split_whitespace().collect();
        // ", and X" / ", or X": the operator joining this clause to the group before.
        let mut join = "AND";
        if i > 0 {
            let first = words.first().map(|w| w.to_ascii_lowercase());
            if let Some(op @ ("or" | "and")) = first.as_deref() {
                join = if op == "or" { "OR" } else { "AND" };
                words.remove(0);
            }
        }
        let Some(clause) = dep5_clause(&words, refs) else {
            continue;
        };
        expr = Some(match expr {
            None => clause,
            Some(before) => {
                let wrap = |e: String| if e.contains(' ') { format!("({e})") } else { e };
                format!("{} {join} {}", wrap(before), wrap(clause))
            }
        });
    }
    expr
}

/// The words of one clause: license names joined by `or`/`and`, each name
/// possibly followed by `with EXCEPTION…`.
fn dep5_clause(words: &[&str], refs: &mut Vec<(String, String)>) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    let mut name: Vec<&str> = Vec::new();
    let flush = |name: &mut Vec<&str>, out: &mut Vec<String>, refs: &mut Vec<(String, String)>| {
        let joined = name
            .iter()
            .map(|w| w.trim_matches(|c| c == '(' || c == ')'))
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        name.clear();
        if joined.is_empty() {
            return;
        }
        let term = match spdx_license(&joined) {
            Some(id) => id.to_string(),
            None => {
                let r = license_ref(&joined);
                if !refs.iter().any(|(id, _)| id == &r) {
                    refs.push((r.clone(), joined.clone()));
                }
                r
            }
        };
        out.push(term);
    };
    for w in words {
        match w.to_ascii_lowercase().as_str() {
            op @ ("or" | "and") => {
                flush(&mut name, &mut out, refs);
                if !out.is_empty() && !out.last().is_some_and(|t| t == "OR" || t == "AND") {
                    out.push(op.to_ascii_uppercase());
                }
            }
            // "with" keeps the exception in the same name.
            _ => name.push(w),
        }
    }
    flush(&mut name, &mut out, refs);
    while out.last().is_some_and(|t| t == "OR" || t == "AND") {
        out.pop();
    }
    (!out.is_empty()).then(|| out.join(" "))
}

fn sha1_of(content: &dyn Content, path: &Path) -> Result<String, AttestError> {
    let err = |source| AttestError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut r = content.open(path).map_err(err)?;
    let mut h = sha1::Sha1::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn spdx(
    e: &Evidence,
    name: &str,
    digest: &Digest,
    content: &dyn Content,
) -> Result<Value, AttestError> {
    let mut refs = Vec::new();
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": name,
        "versionInfo": digest.to_string(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "comment": format!("built by jail {} ({})", e.jail, e.build.kind.as_str()),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for (i, p) in e.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{i}");
        let lic = spdx_expression(p, &mut refs);
        let mut pkg = json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "supplier": "NOASSERTION",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": true,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": lic,
            "copyrightText": "NOASSERTION",
            "sourceInfo": format!("built from the {} source package {}", p.source, p.source_version.as_deref().unwrap_or(&p.version)),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl(&e.origin),
            }],
        });
        if p.partial() {
            pkg["comment"] = json!(format!(
                "partial: {} of the package's {} files are in the image",
                p.files_kept, p.files_total
            ));
        }
        packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut files = Vec::new();
    for (i, (path, rec)) in e
        .files
        .iter()
        .filter(|(_, r)| r.entry.file_type == FileType::File)
        .enumerate()
    {
        let id = format!("SPDXRef-File-{i}");
        let Some(sha256) = rec.entry.sha256 else {
            continue;
        };
        files.push(json!({
            "SPDXID": id,
            "fileName": format!(".{}", path.as_path().display()),
            "checksums": [
                {"algorithm": "SHA1", "checksumValue": sha1_of(content, path.as_path())?},
                {"algorithm": "SHA256", "checksumValue": sha256.hex()},
            ],
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        }));
        let owner = rec
            .package
            .as_ref()
            .and_then(|r| e.packages.iter().position(|p| p.reference() == *r))
            .map_or("SPDXRef-Image".to_string(), |i| {
                format!("SPDXRef-Package-{i}")
            });
        if owner == "SPDXRef-Image" {
            // The image package is not analyzed file by file: a file not
            // from a package is described by the document.
            relationships.push(json!({
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": id,
            }));
        } else {
            relationships.push(json!({
                "spdxElementId": owner,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": id,
            }));
        }
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": format!("https://jail.invalid/spdx/{}", digest.hex()),
        "creationInfo": {
            "created": created(e),
            "creators": [format!("Tool: jail-{}", e.jail)],
        },
        "packages": packages,
        "files": files,
        "relationships": relationships,
    });
    if !refs.is_empty() {
        doc["hasExtractedLicensingInfos"] = Value::Array(
            refs.iter()
                .map(|(id, name)| {
                    json!({
                        "licenseId": id,
                        "name": name,
                        "extractedText": format!("The license named {name:?} in a Debian copyright file (/usr/share/doc/PACKAGE/copyright)."),
                    })
                })
                .collect(),
        );
    }
    Ok(doc)
}

/// `urn:uuid:` from a digest (version 5 and RFC 4122 variant bits set).
fn uuid_of(d: &Digest) -> String {
    let h = d.hex();
    let mut b: Vec<char> = h[..32].chars().collect();
    b[12] = '5';
    b[16] = match b[16] {
        '0' | '4' | '8' | 'c' => '8',
        '1' | '5' | '9' | 'd' => '9',
        '2' | '6' | 'a' | 'e' => 'a',
        _ => 'b',
    };
    let s: String = b.into_iter().collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &s[..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

fn cyclonedx(e: &Evidence, name: &str, digest: &Digest) -> Value {
    let file_component = |path: &Path, sha256: &Digest| {
        json!({
            "type": "file",
            "bom-ref": format!("file:{}", path.display()),
            "name": path.display().to_string(),
            "hashes": [{"alg": "SHA-256", "content": sha256.hex()}],
        })
    };
    let mut components = Vec::new();
    let mut dependencies = Vec::new();
    let mut image_deps = Vec::new();
    for p in &e.packages {
        let purl = p.purl(&e.origin);
        let r = p.reference();
        let files: Vec<Value> = e
            .files
            .iter()
            .filter(|(_, f)| f.package.as_ref() == Some(&r) && f.entry.file_type == FileType::File)
            .filter_map(|(path, f)| f.entry.sha256.map(|d| file_component(path.as_path(), &d)))
            .collect();
        let mut c = json!({
            "type": "library",
            "bom-ref": purl,
            "name": p.name,
            "version": p.version,
            "purl": purl,
            "properties": [
                {"name": "jail:partial", "value": p.partial().to_string()},
                {"name": "jail:files-kept", "value": p.files_kept.to_string()},
                {"name": "jail:files-total", "value": p.files_total.to_string()},
                {"name": "jail:source-package", "value": p.source},
            ],
        });
        if let Some(a) = &p.architecture {
            if let Some(v) = c["properties"].as_array_mut() {
                v.push(json!({"name": "jail:architecture", "value": a}));
            }
        }
        if !p.licenses.is_empty() {
            c["licenses"] = Value::Array(
                p.licenses
                    .iter()
                    .map(|l| match spdx_license(l) {
                        Some(id) => json!({"license": {"id": id}}),
                        None => json!({"license": {"name": l}}),
                    })
                    .collect(),
            );
        }
        if !files.is_empty() {
            c["components"] = Value::Array(files);
        }
        components.push(c);
        image_deps.push(purl);
    }
    for (path, f) in &e.files {
        if f.package.is_none() && f.entry.file_type == FileType::File {
            if let Some(d) = f.entry.sha256 {
                components.push(file_component(path.as_path(), &d));
            }
        }
    }
    dependencies.push(json!({"ref": "image", "dependsOn": image_deps}));
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": uuid_of(digest),
        "version": 1,
        "metadata": {
            "timestamp": created(e),
            "tools": {"components": [{"type": "application", "name": "jail", "version": e.jail}]},
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": name,
                "version": digest.to_string(),
            },
        },
        "components": components,
        "dependencies": dependencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_uuids() {
        assert_eq!(
            SbomFormat::of_name(Path::new("/x/a.spdx.json")),
            Some(SbomFormat::Spdx)
        );
        assert_eq!(
            SbomFormat::of_name(Path::new("a.CDX.json")),
            Some(SbomFormat::Cyclonedx)
        );
        assert_eq!(SbomFormat::of_name(Path::new("a.json")), None);
        let u = uuid_of(&Digest::of(b"x"));
        assert_eq!(u.len(), "urn:uuid:".len() + 36);
        assert_eq!(&u[9 + 14..9 + 15], "5");
    }

    #[test]
    fn license_expressions() {
        let mut p = PackageRecord {
            name: "x".into(),
            version: "1".into(),
            architecture: None,
            source: "x".into(),
            source_version: None,
            manager: "dpkg".into(),
            licenses: vec!["GPL-2+ or Artistic".into(), "BSD-3-clause".into()],
            files_kept: 1,
            files_total: 1,
        };
        let mut refs = Vec::new();
        assert_eq!(
            spdx_expression(&p, &mut refs),
            "(GPL-2.0-or-later OR LicenseRef-debian-Artistic) AND BSD-3-Clause"
        );
        assert_eq!(refs.len(), 1);
        // DEP-5's comma closes the group before it.
        p.licenses = vec!["GPL-2+ or Artistic, and BSD-3-clause".into()];
        assert_eq!(
            spdx_expression(&p, &mut refs),
            "(GPL-2.0-or-later OR LicenseRef-debian-Artistic) AND BSD-3-Clause"
        );
        // An exception stays with its license, as one reference.
        p.licenses = vec!["GPL-2+ with OpenSSL exception".into(), "MIT".into()];
        assert_eq!(
            spdx_expression(&p, &mut refs),
            "LicenseRef-debian-GPL-2--with-OpenSSL-exception AND MIT"
        );
        p.licenses = vec!["Expat".into(), "Expat".into()];
        assert_eq!(spdx_expression(&p, &mut refs), "MIT");
        p.licenses = vec!["GPL-3+ and ISC".into(), "ISC".into()];
        assert_eq!(spdx_expression(&p, &mut refs), "GPL-3.0-or-later AND ISC");
        p.licenses.clear();
        assert_eq!(spdx_expression(&p, &mut refs), "NOASSERTION");
    }
}
