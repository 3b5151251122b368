//! Pure checks an upload must pass before anything else reads it: size, type by magic bytes (never by name),
//! allowed types, and a safe key.

use std::fmt;
use std::str::FromStr;

/// File types we recognise by content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileType {
    /// `%PDF-` within the first 1024 bytes, as the PDF specification allows.
    Pdf,
    /// PNG image.
    Png,
    /// JPEG image.
    Jpeg,
    /// ZIP archive (also docx/xlsx).
    Zip,
    /// gzip stream.
    Gzip,
    /// HTML or XML text.
    Markup,
    /// Anything else.
    Unknown,
}

impl FileType {
    /// Lowercase name used in configuration and reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Pdf => "pdf",
            FileType::Png => "png",
            FileType::Jpeg => "jpeg",
            FileType::Zip => "zip",
            FileType::Gzip => "gzip",
            FileType::Markup => "markup",
            FileType::Unknown => "unknown",
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FileType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "pdf" => FileType::Pdf,
            "png" => FileType::Png,
            "jpeg" | "jpg" => FileType::Jpeg,
            "zip" => FileType::Zip,
            "gzip" => FileType::Gzip,
            other => return Err(format!("unknown file type {other:?} (known: pdf, png, jpeg, zip, gzip)")),
        })
    }
}

/// Detects the type from the first bytes of the file.
pub fn sniff(head: &[u8]) -> FileType {
    let window = &head[..head.len().min(1024)];
    if window.starts_with(b"\x89PNG\r\n\x1a\n") {
        FileType::Png
    } else if window.starts_with(&[0xFF, 0xD8, 0xFF]) {
        FileType::Jpeg
    } else if window.starts_with(b"PK\x03\x04") || window.starts_with(b"PK\x05\x06") {
        FileType::Zip
    } else if window.starts_with(&[0x1F, 0x8B]) {
        FileType::Gzip
    } else if window.windows(5).any(|w| w == b"%PDF-") {
        FileType::Pdf
    } else {
        let text = String::from_utf8_lossy(&window[..window.len().min(256)]).to_ascii_lowercase();
        let t = text.trim_start();
        if t.starts_with("<!doctype") || t.starts_with("<html") || t.starts_with("<?xml") {
            FileType::Markup
        } else {
            FileType::Unknown
        }
    }
}

/// Why an upload is quarantined; the variant name is the reason code recorded with the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Zero bytes.
    #[error("the file is empty")]
    Empty,
    /// Over the tenant's limit.
    #[error("the file has {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Actual size.
        size: u64,
        /// The tenant's limit.
        limit: u64,
    },
    /// Content is not an allowed type.
    #[error("content is {detected}, which is not an allowed type (allowed: {allowed})")]
    TypeNotAllowed {
        /// What the bytes say.
        detected: FileType,
        /// What the tenant accepts.
        allowed: String,
    },
    /// The key tries to escape its prefix or is otherwise unsafe to reuse.
    #[error("unsafe object key: {0}")]
    UnsafeKey(&'static str),
}

impl Rejection {
    /// Fixed code for incidents and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Empty => "empty_file",
            Rejection::TooLarge { .. } => "file_too_large",
            Rejection::TypeNotAllowed { .. } => "type_not_allowed",
            Rejection::UnsafeKey(_) => "unsafe_key",
        }
    }
}

/// Checks the key under `prefix` and returns a safe file name to use downstream.
pub fn sanitize_key(key: &str, prefix: &str) -> Result<String, Rejection> {
    let rest = key.strip_prefix(prefix).ok_or(Rejection::UnsafeKey("outside the upload prefix"))?;
    if rest.is_empty() || rest.ends_with('/') {
        return Err(Rejection::UnsafeKey("no file name"));
    }
    if key.len() > 1024 {
        return Err(Rejection::UnsafeKey("longer than 1024 bytes"));
    }
    if rest.chars().any(|c| c.is_control()) {
        return Err(Rejection::UnsafeKey("control characters"));
    }
    if rest.contains('\\') {
        return Err(Rejection::UnsafeKey("backslashes"));
    }
    if rest.starts_with('/') || rest.split('/').any(|seg| seg == ".." || seg == "." || seg.is_empty()) {
        return Err(Rejection::UnsafeKey("path traversal or empty segments"));
    }
    let name = rest.rsplit('/').next().unwrap_or(rest);
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .take(100)
        .collect();
    let safe = safe.trim_start_matches('.').to_owned();
    if safe.is_empty() {
        return Err(Rejection::UnsafeKey("no usable characters in the file name"));
    }
    Ok(safe)
}

/// Size and type checks, in the order that reads the least.
pub fn check(size: u64, head: &[u8], limit: u64, allowed: &[FileType]) -> Result<FileType, Rejection> {
    if size == 0 {
        return Err(Rejection::Empty);
    }
    if size > limit {
        return Err(Rejection::TooLarge { size, limit });
    }
    let detected = sniff(head);
    if !allowed.contains(&detected) {
        let allowed = allowed.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ");
        return Err(Rejection::TypeNotAllowed { detected, allowed });
    }
    Ok(detected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_bytes_not_names() {
        assert_eq!(sniff(b"%PDF-1.7\n..."), FileType::Pdf);
        assert_eq!(sniff(b"junk before header %PDF-1.4"), FileType::Pdf);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), FileType::Png);
        assert_eq!(sniff(b"PK\x03\x04...."), FileType::Zip);
        assert_eq!(sniff(b"  <!DOCTYPE html><html>"), FileType::Markup);
        assert_eq!(sniff(b"hello"), FileType::Unknown);
        let mut late = vec![b' '; 2000];
        late.extend_from_slice(b"%PDF-1.7");
        assert_eq!(sniff(&late), FileType::Unknown, "a header past 1024 bytes does not count");
    }

    #[test]
    fn checks_in_order() {
        let pdf = b"%PDF-1.7";
        assert_eq!(check(0, b"", 10, &[FileType::Pdf]), Err(Rejection::Empty));
        assert_eq!(check(11, pdf, 10, &[FileType::Pdf]), Err(Rejection::TooLarge { size: 11, limit: 10 }));
        assert_eq!(check(8, pdf, 10, &[FileType::Pdf]), Ok(FileType::Pdf));
        let e = check(8, b"PK\x03\x04", 10, &[FileType::Pdf]).unwrap_err();
        assert_eq!(e.code(), "type_not_allowed");
        assert_eq!(e.to_string(), "content is zip, which is not an allowed type (allowed: pdf)");
    }

    #[test]
    fn keys_are_sanitised() {
        assert_eq!(sanitize_key("incoming/2026/Quote Ærø #1.pdf", "incoming/").unwrap(), "Quote__r___1.pdf");
        assert_eq!(sanitize_key("incoming/a.pdf", "incoming/").unwrap(), "a.pdf");
        for bad in [
            "incoming/../x.pdf",
            "incoming//x.pdf",
            "incoming/a/./b.pdf",
            "other/x.pdf",
            "incoming/",
            "incoming/a\\b.pdf",
            "incoming/a\u{0}.pdf",
            "incoming/...",
        ] {
            assert!(sanitize_key(bad, "incoming/").is_err(), "{bad:?} accepted");
        }
    }
}
