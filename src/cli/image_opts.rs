//! The image options shared by `trace`, `pack` and `slim`: one definition,
//! so the three commands accept the same flags.

use jail::image::{Compression, Format};
use jail::pipeline::ImageRequest;

/// Image metadata and output format.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ImageOpts {
    /// oci-archive (one tar, also loadable as a docker archive) or oci-dir.
    #[arg(long, default_value = "oci-archive")]
    pub format: Format,
    /// Layer compression: gzip, zstd or none.
    #[arg(long, default_value = "gzip")]
    pub compression: Compression,
    /// Image name and tag [default: jail/<name>:latest].
    #[arg(long, value_name = "NAME:TAG")]
    pub tag: Option<String>,
    /// Entrypoint: a JSON array (`'["/bin/sh","-c"]'`) or words split on
    /// whitespace.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Cmd: a JSON array or words split on whitespace.
    #[arg(long)]
    pub cmd: Option<String>,
    /// Environment variable (repeatable).
    #[arg(long, value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory.
    #[arg(long)]
    pub workdir: Option<String>,
    /// User (name or uid, optionally :group).
    #[arg(long)]
    pub user: Option<String>,
    /// Config label (repeatable).
    #[arg(long, value_name = "K=V")]
    pub label: Vec<String>,
    /// Compression threads [default: all cores]; never changes the bytes.
    #[arg(long, hide = true)]
    pub threads: Option<usize>,
    /// Once the image is written, push it to this registry reference
    /// (HOST[:PORT]/NAME[:TAG]; blobs the registry has are skipped) and
    /// print it by digest (NAME@sha256:…).
    #[arg(long, value_name = "REF")]
    pub push: Option<String>,
    /// At most N layers, 1-16: big packages alone, the rest, the app on top [default: 8]
    #[arg(long, value_name = "N")]
    pub layers: Option<usize>,
    /// Reuse this jail image's layers byte for byte; add only what the command needs beyond it
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<String>,
}

impl ImageOpts {
    /// The pipeline's image request.
    pub fn request(&self) -> ImageRequest {
        ImageRequest {
            format: self.format,
            compression: self.compression,
            tag: self.tag.clone(),
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            label: self.label.clone(),
            threads: self.threads,
            push: self.push.clone(),
            layers: self.layers,
            base: self.base.clone(),
        }
    }
}
