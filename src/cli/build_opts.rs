//! Option groups shared by the commands that build images: the file-set flags
//! (`FilesOpts`: trace, slim) and the evidence flags (`EvidenceOpts`: trace,
//! slim, pack; the steps are `jail::pipeline::evidence`).

use std::path::PathBuf;

use jail::attest::sbom::SbomFormat;
use jail::pipeline::evidence::EvidenceRequest;
use jail::pipeline::FilesRequest;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct EvidenceOpts {
    /// Do not write the kept packages' database (`/var/lib/dpkg/status.d`) into the image.
    #[arg(long)]
    pub no_package_db: bool,
    /// Write an SBOM here: SPDX 2.3 JSON for `*.spdx.json`, CycloneDX 1.6 for `*.cdx.json`.
    #[arg(long, value_name = "FILE")]
    pub sbom: Option<PathBuf>,
    /// The SBOM format, whatever the file name.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub sbom_format: Option<SbomFormat>,
    /// Write the image's provenance here (in-toto Statement v1, SLSA Provenance v1).
    #[arg(long, value_name = "FILE")]
    pub provenance: Option<PathBuf>,
    /// Attach the SBOM and provenance to the image as an attestation manifest (docs/verify.md).
    #[arg(long)]
    pub attest: bool,
}

impl EvidenceOpts {
    pub fn request(&self) -> EvidenceRequest {
        EvidenceRequest {
            no_package_db: self.no_package_db,
            sbom: self.sbom.clone(),
            sbom_format: self.sbom_format,
            provenance: self.provenance.clone(),
            attest: self.attest,
        }
    }
}

/// What goes into the jail besides what the run used.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilesOpts {
    /// Add files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Keep /etc/passwd and /etc/group whole instead of reducing them by evidence.
    #[arg(long)]
    pub keep_passwd: bool,
    /// Put /etc/shadow and /etc/gshadow, when read, in without password hashes.
    #[arg(long)]
    pub redacted_shadow: bool,
    /// Build even when the command exits non-zero (and write the image when a check failed).
    #[arg(long)]
    pub keep_going: bool,
}

impl FilesOpts {
    pub fn request(&self) -> FilesRequest {
        FilesRequest {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            keep_passwd: self.keep_passwd,
            redacted_shadow: self.redacted_shadow,
            keep_going: self.keep_going,
        }
    }
}
