//! Content digests as OCI writes them.

/// `sha256:<hex>` → `<hex>`, refusing anything that is not a plain sha256 digest (a digest is
/// joined to paths, so it must not carry separators).
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit())).then_some(hex)
}

/// A reader that hashes (sha256) and counts what passes through it.
pub(crate) struct HashingReader<R> {
    pub(crate) inner: R,
    hasher: sha2::Sha256,
    read: u64,
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let count = self.inner.read(buffer)?;
        sha2::Digest::update(&mut self.hasher, &buffer[..count]);
        self.read += count as u64;
        Ok(count)
    }
}

impl<R: std::io::Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self { inner, hasher: sha2::Digest::new(), read: 0 }
    }

    /// Reads what is left; the `sha256:` digest and the size of all that was read.
    pub(crate) fn finish(mut self) -> std::io::Result<(String, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((format!("sha256:{:x}", sha2::Digest::finalize(self.hasher)), self.read))
    }
}
