//! Facts about the host: its resolver configuration and hostname.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, WrappedIoError};

/// Upstream refuses resolv.conf files larger than this (`maxResolvConfLength`).
const MAX_RESOLV_CONF_LEN: u64 = 10 << 20;

/// Where Linux exposes the hostname (what Go's `os.Hostname` reads).
const PROC_HOSTNAME: &str = "/proc/sys/kernel/hostname";

/// The parts of resolv.conf the kubelet passes on to pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Problems found while parsing resolv.conf (upstream's messages, joined).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResolvConfParseError(pub String);

/// Parse resolv.conf text as upstream's `parseResolvConf`: `nameserver` lines accumulate (first
/// value only); the last `search` line wins, with trailing dots trimmed and a lone `.` dropped;
/// the last `options` line wins. Lines starting with `#` are comments. A `nameserver` line
/// without a value is an error (the message is upstream's).
pub fn parse_resolv_conf(content: &str) -> std::result::Result<ResolvConf, ResolvConfParseError> {
    let mut rc = ResolvConf::default();
    let mut errors = Vec::new();
    for line in content.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let Some(key) = fields.next() else {
            continue;
        };
        match key {
            "nameserver" => match fields.next() {
                Some(ns) => rc.nameservers.push(ns.to_string()),
                None => errors.push("nameserver list is empty".to_string()),
            },
            "search" => {
                rc.searches =
                    fields.filter(|s| *s != ".").map(|s| s.strip_suffix('.').unwrap_or(s).to_string()).collect();
            }
            "options" => rc.options = fields.map(str::to_string).collect(),
            _ => {}
        }
    }
    if errors.is_empty() { Ok(rc) } else { Err(ResolvConfParseError(errors.join(", "))) }
}

/// Read and parse the resolver configuration at `path` (usually `/etc/resolv.conf`).
pub fn read_resolv_conf(path: &Path) -> Result<ResolvConf> {
    let f = std::fs::File::open(path).map_err(|err| WrappedIoError::Open { err, path: path.to_path_buf() })?;
    let mut content = String::new();
    f.take(MAX_RESOLV_CONF_LEN + 1)
        .read_to_string(&mut content)
        .map_err(|err| WrappedIoError::Read { err, path: path.to_path_buf() })?;
    if content.len() as u64 > MAX_RESOLV_CONF_LEN {
        return Err(Error::ResolvConf {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_RESOLV_CONF_LEN} bytes"),
        });
    }
    parse_resolv_conf(&content).map_err(|e| Error::ResolvConf { path: path.to_path_buf(), reason: e.0 })
}

/// The kernel hostname, whitespace-trimmed (not lowercased: deriving the node name from it is
/// the caller's business).
pub fn hostname() -> Result<String> {
    hostname_from(Path::new(PROC_HOSTNAME))
}

fn hostname_from(path: &Path) -> Result<String> {
    let raw = std::fs::read_to_string(path).map_err(|err| WrappedIoError::Read { err, path: path.to_path_buf() })?;
    let name = raw.trim();
    if name.is_empty() {
        return Err(Error::Hostname { path: PathBuf::from(path), reason: "empty hostname".to_string() });
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_resolv_conf() {
        let rc = parse_resolv_conf(
            "# comment\n\
             nameserver 10.0.0.1\n\
             nameserver 10.0.0.2 ignored\n\
             search old.example\n\
             search a.example. b.example . \n\
             options ndots:1\n\
             options ndots:5 timeout:2\n\
             domain ignored.example\n\
             \n",
        )
        .unwrap();
        assert_eq!(rc.nameservers, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(rc.searches, ["a.example", "b.example"]);
        assert_eq!(rc.options, ["ndots:5", "timeout:2"]);
    }

    #[test]
    fn empty_nameserver_is_an_error() {
        assert_eq!(parse_resolv_conf("nameserver\n").unwrap_err().to_string(), "nameserver list is empty");
    }

    #[test]
    fn reads_resolv_conf_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(&p, "nameserver 1.1.1.1\n").unwrap();
        assert_eq!(read_resolv_conf(&p).unwrap().nameservers, ["1.1.1.1"]);
        std::fs::write(&p, "nameserver\n").unwrap();
        let err = read_resolv_conf(&p).unwrap_err().to_string();
        assert!(err.contains("resolv.conf") && err.contains("empty"), "{err}");
        let err = read_resolv_conf(&dir.path().join("missing")).unwrap_err();
        assert!(err.is_not_found());
    }

    #[test]
    fn reads_hostname() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hostname");
        std::fs::write(&p, "node-1\n").unwrap();
        assert_eq!(hostname_from(&p).unwrap(), "node-1");
        std::fs::write(&p, "\n").unwrap();
        assert!(hostname_from(&p).is_err());
        assert!(!hostname().unwrap().is_empty());
    }
}
