//! Quarantine: a file that cannot be processed is moved aside in its own bucket, never lost, with the reason on
//! the object. Used by every pipeline step that rejects an input.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::MetadataDirective;

use crate::error::{AwsError, Class};

/// Where quarantined objects go, in the tenant's inbox bucket.
pub const PREFIX: &str = "quarantine/";

/// Escapes a key for `x-amz-copy-source`, which S3 expects URL-encoded.
fn copy_source(bucket: &str, key: &str, version: Option<&str>) -> String {
    let path: String = key
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    match version {
        Some(v) => format!("{bucket}/{path}?versionId={v}"),
        None => format!("{bucket}/{path}"),
    }
}

/// Moves `bucket/key` to `bucket/quarantine/<day>/<name>` with `reason` in its metadata (copy, then delete the
/// original); returns the `s3://` location it is kept at. In replay mode it moves nothing and returns
/// [`replay::quarantine_stop`](crate::replay::quarantine_stop), so the handler stops where it made its decision.
pub async fn move_aside(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
    day: &str,
    name: &str,
    reason: &str,
) -> Result<String, AwsError> {
    if crate::replay::active() {
        // `palisade replay` reproduces the decision without moving the file (or anything after it).
        crate::replay::report(crate::replay::Reported {
            effect: "quarantine".into(),
            class: Class::Permanent,
            code: reason.to_owned(),
            summary: format!("the file would be quarantined ({reason})"),
        });
        return Err(crate::replay::quarantine_stop(reason));
    }
    let dest = format!("{PREFIX}{day}/{name}");
    let copied = s3
        .copy_object()
        .bucket(bucket)
        .key(&dest)
        .copy_source(copy_source(bucket, key, version))
        .metadata("palisade-reason", reason)
        .metadata_directive(MetadataDirective::Replace)
        .send()
        .await;
    if let Err(e) = copied {
        let e = AwsError::new("s3:CopyObject", e);
        if e.class == Class::Transient {
            return Err(e);
        }
        // Some objects cannot be copied (e.g. a 0-byte upload on some stores): keep a marker with the reason.
        s3.put_object()
            .bucket(bucket)
            .key(&dest)
            .body(ByteStream::from_static(b""))
            .metadata("palisade-reason", reason)
            .send()
            .await
            .map_err(|e| AwsError::new("s3:PutObject", e))?;
    }
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
        .map_err(|e| AwsError::new("s3:DeleteObject", e))?;
    Ok(format!("s3://{bucket}/{dest}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_source_escapes_the_key() {
        assert_eq!(super::copy_source("b", "incoming/a b+é.pdf", None), "b/incoming/a%20b%2B%C3%A9.pdf");
        assert_eq!(super::copy_source("b", "k", Some("v1")), "b/k?versionId=v1");
    }
}
