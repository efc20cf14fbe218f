//! The destinations of a job, checked before it does any work: each one's
//! directory exists, a manifest is not a directory, and a `--tree`
//! directory is empty unless `--force`. (Writing them is still atomic:
//! these checks only spare a long run that could not be saved.)

use std::path::PathBuf;

use super::{parent_of, Failure, JobError};

/// Where a job writes.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    /// The image (archive or layout directory), when one is written.
    pub image: Option<PathBuf>,
    /// `--tree DIR`.
    pub tree: Option<PathBuf>,
    /// `--manifest FILE`.
    pub manifest: Option<PathBuf>,
    /// Replace a non-empty tree or layout directory.
    pub force: bool,
}

impl Destinations {
    /// Exit 2 naming the destination that cannot be written.
    pub fn check(&self) -> Result<(), Failure> {
        let parent_exists = |what: &'static str, p: &std::path::Path| {
            let parent = parent_of(p);
            if parent.is_dir() {
                Ok(())
            } else {
                Err(Failure::from(JobError::NoParent {
                    what,
                    path: p.to_path_buf(),
                    parent: parent.to_path_buf(),
                }))
            }
        };
        if let Some(p) = &self.image {
            parent_exists("image destination", p)?;
        }
        if let Some(p) = &self.manifest {
            parent_exists("manifest destination", p)?;
            if p.is_dir() {
                return Err(JobError::ManifestIsDir(p.clone()).into());
            }
        }
        if let Some(p) = &self.tree {
            parent_exists("tree destination", p)?;
            match std::fs::symlink_metadata(p) {
                Ok(m) if !m.is_dir() => return Err(JobError::TreeNotDir(p.clone()).into()),
                Ok(_) if !self.force => {
                    let empty = std::fs::read_dir(p)
                        .map(|mut d| d.next().is_none())
                        .unwrap_or(false);
                    if !empty {
                        return Err(JobError::TreeNotEmpty(p.clone()).into());
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;

    fn refused(d: Destinations) -> String {
        let f = d.check().expect_err("refused");
        assert_eq!(f.code, 2);
        f.to_string()
    }

    #[test]
    fn each_destination_is_checked_before_any_work() {
        let tmp = tempfile::tempdir().unwrap();
        let full = tmp.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("x"), "").unwrap();
        assert_eq!(
            refused(Destinations {
                image: Some("/nonexistent/a.tar".into()),
                ..Destinations::default()
            }),
            "image destination /nonexistent/a.tar: the directory /nonexistent does not exist; create it or choose another path"
        );
        assert!(refused(Destinations {
            manifest: Some(tmp.path().to_path_buf()),
            ..Destinations::default()
        })
        .ends_with("is a directory; give a file name"));
        let tree = Destinations {
            tree: Some(full.clone()),
            ..Destinations::default()
        };
        assert!(refused(tree.clone()).ends_with("is not empty; pass --force to replace it"));
        assert!(Destinations {
            force: true,
            ..tree
        }
        .check()
        .is_ok());
        assert!(Destinations {
            tree: Some(full.join("x")),
            ..Destinations::default()
        }
        .check()
        .is_err_and(|f| f.to_string().ends_with("exists and is not a directory")));
        // A bare file name is in the working directory, which exists.
        assert!(Destinations {
            image: Some("out.tar".into()),
            ..Destinations::default()
        }
        .check()
        .is_ok());
        assert!(JobError::TreeNotDir(full).is_bad_input());
    }
}
