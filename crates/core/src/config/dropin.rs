//! `--config-dir`: drop-in `KubeletConfiguration` files merged over the `--config` file, as
//! upstream's `mergeKubeletConfigurations`: every `*.conf` file under the directory (recursively,
//! in lexical order) is a complete `KubeletConfiguration` document whose set fields override
//! what came before; flags still win over all of them.

use std::path::{Path, PathBuf};

use super::{ConfigError, KubeletConfigFile, load_file};

/// Loads the drop-ins of `dir` and lays them, in order, over `base`. Returns the merged
/// settings and the warnings of every file.
pub fn load_dropin_dir(dir: &Path, base: KubeletConfigFile) -> Result<(KubeletConfigFile, Vec<String>), ConfigError> {
    let mut files = Vec::new();
    collect_conf_files(dir, &mut files)?;
    let mut merged = base;
    let mut warnings = Vec::new();
    for path in files {
        let (file, w) = load_file(&path)?;
        merged = merged.overlay(file);
        warnings.extend(w);
    }
    Ok((merged, warnings))
}

/// Depth-first, lexical order within each directory (Go's `filepath.WalkDir`).
fn collect_conf_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ConfigError> {
    let read_err = |source| ConfigError::ReadDir { path: dir.to_owned(), source };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_conf_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "conf") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::KubeletConfiguration;
    use std::time::Duration;

    const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

    #[test]
    fn dropins_override_in_lexical_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("10-a.conf"), format!("{HEAD}maxPods: 20\nclusterDomain: a.local\n")).unwrap();
        std::fs::write(d.join("20-b.conf"), format!("{HEAD}maxPods: 30\nsyncFrequency: 0s\nfoo: bar\n")).unwrap();
        std::fs::write(d.join("30-ignored.yaml"), "not: parsed").unwrap();
        std::fs::create_dir(d.join("40-sub")).unwrap();
        std::fs::write(d.join("40-sub/x.conf"), format!("{HEAD}authentication:\n  x509:\n    clientCAFile: /ca.crt\n"))
            .unwrap();

        let base = KubeletConfigFile {
            max_pods: Some(10),
            sync_frequency: Some(Duration::from_secs(30)),
            registry_burst: Some(7),
            ..Default::default()
        };
        let (merged, warnings) = load_dropin_dir(d, base).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("\"foo\"") && warnings[0].contains("20-b.conf"), "{warnings:?}");
        let c = KubeletConfiguration::resolve(merged, KubeletConfigFile::default());
        assert_eq!(c.max_pods, 30, "the later drop-in wins");
        assert_eq!(c.cluster_domain, "a.local");
        assert_eq!(c.sync_frequency, Duration::from_secs(30), "a zero value does not override");
        assert_eq!(c.registry_burst, 7, "the base file's values stay");
        assert_eq!(c.authentication["x509"]["clientCAFile"], "/ca.crt");
        assert_eq!(c.authentication["webhook"]["enabled"], true, "nested objects merge");
    }

    #[test]
    fn missing_dir_and_bad_dropin_are_errors() {
        let err = load_dropin_dir(Path::new("/nonexistent/kubelet.conf.d"), KubeletConfigFile::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("failed to read kubelet config drop-in directory /nonexistent/kubelet.conf.d"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.conf"), "maxPods: 3\n").unwrap();
        let err = load_dropin_dir(dir.path(), KubeletConfigFile::default()).unwrap_err().to_string();
        assert!(err.contains("a.conf") && err.contains("kind is missing"), "{err}");
    }
}
