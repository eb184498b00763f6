//! Image references.

/// Docker-style normalization of an image reference, as containerd names images: `busybox` → `docker.io/library/busybox:latest`.
pub fn normalize_ref(image: &str) -> String {
    if image.starts_with("sha256:") {
        return image.to_string();
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let mut name = match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => name.to_string(),
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    };
    if let Some(rest) = name.strip_prefix("docker.io/")
        && !rest.contains('/')
    {
        name = format!("docker.io/library/{rest}");
    }
    let last = name.rsplit('/').next().unwrap_or_default();
    match digest {
        Some(d) => format!("{name}@{d}"),
        None if last.contains(':') => name,
        None => format!("{name}:latest"),
    }
}
