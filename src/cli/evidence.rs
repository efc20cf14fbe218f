//! The evidence flags shared by `trace`, `slim` and `pack` (`--sbom`,
//! `--sbom-format`, `--provenance`, `--no-package-db`; the steps are
//! `jail::pipeline::evidence`).

use std::path::PathBuf;

use jail::attest::sbom::SbomFormat;
use jail::pipeline::evidence::EvidenceRequest;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct EvidenceOpts {
    /// Do not write the package database (`/var/lib/dpkg/status.d`) of the
    /// packages with kept files into the image.
    #[arg(long)]
    pub no_package_db: bool,
    /// Write an SBOM of the image here: SPDX 2.3 JSON for `*.spdx.json`,
    /// CycloneDX 1.6 JSON for `*.cdx.json` (or see --sbom-format).
    #[arg(long, value_name = "FILE")]
    pub sbom: Option<PathBuf>,
    /// The SBOM format, whatever the file name.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub sbom_format: Option<SbomFormat>,
    /// Write the image's provenance here: an in-toto Statement v1 with a
    /// SLSA Provenance v1 predicate.
    #[arg(long, value_name = "FILE")]
    pub provenance: Option<PathBuf>,
}

impl EvidenceOpts {
    pub fn request(&self) -> EvidenceRequest {
        EvidenceRequest {
            no_package_db: self.no_package_db,
            sbom: self.sbom.clone(),
            sbom_format: self.sbom_format,
            provenance: self.provenance.clone(),
        }
    }
}
