//! Content digests as OCI writes them.

/// `sha256:<hex>` → `<hex>`, refusing anything that is not a plain sha256 digest (a digest is
/// joined to paths, so it must not carry separators).
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit())).then_some(hex)
}
