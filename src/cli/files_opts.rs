//! The file-set flags of `trace` and `slim`, one definition.

use jail::pipeline::FilesRequest;

/// What goes into the jail besides what the run used.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilesOpts {
    /// Add files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Keep /etc/passwd and /etc/group whole instead of reducing them to
    /// root and the run user.
    #[arg(long)]
    pub keep_passwd: bool,
    /// Build even when the command exits non-zero (and write the image
    /// even when a check in the jail failed).
    #[arg(long)]
    pub keep_going: bool,
}

impl FilesOpts {
    pub fn request(&self) -> FilesRequest {
        FilesRequest {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            keep_passwd: self.keep_passwd,
            keep_going: self.keep_going,
        }
    }
}
