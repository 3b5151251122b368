//! `palisade dashboard-url`: a short-lived link to the compliance dashboard, which lives in a private bucket.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use palisade_shared::error::AwsError;

use crate::{CliError, Clients};

/// The page's key in the dashboard bucket (written by the compliance-dashboard function).
pub const PAGE_KEY: &str = "dashboard/index.html";
/// The JSON beside it.
pub const DATA_KEY: &str = "dashboard/data.json";
/// The longest link we hand out: long enough to open and share in a meeting, short enough not to become a
/// bookmark that outlives the reader's access.
pub const MAX_EXPIRY: Duration = Duration::from_secs(12 * 3600);

/// Checks an expiry given on the command line (30m, 4h): at least a minute, at most [`MAX_EXPIRY`].
pub fn expiry(s: &str) -> Result<Duration, String> {
    let d: palisade_policy::Duration = s.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 15m, 1h)"))?;
    let secs = d.as_delta().num_seconds();
    let max = MAX_EXPIRY.as_secs();
    match u64::try_from(secs) {
        Ok(n) if (60..=max).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(format!("{s:?}: a link lives between 1m and {}h", max / 3600)),
    }
}

/// Prints a presigned GET URL for the page (or its JSON) after checking that it exists.
pub async fn url(clients: &Clients, stack: &str, expires: Duration, data: bool) -> Result<(), CliError> {
    let stack = clients.stack(stack).await?;
    let bucket = stack.physical("DashboardBucket")?.to_owned();
    let key = if data { DATA_KEY } else { PAGE_KEY };
    if let Err(e) = clients.s3.head_object().bucket(&bucket).key(key).send().await {
        let e = AwsError::new("s3:HeadObject", e);
        return Err(if e.code == "NotFound" || e.code == "NoSuchKey" {
            CliError::Input(format!(
                "the dashboard has not been generated yet in {bucket}: the {}-compliance-dashboard function writes \
                 it every 15 minutes",
                stack.name
            ))
        } else {
            e.into()
        });
    }
    let cfg = PresigningConfig::expires_in(expires).map_err(|e| CliError::Input(e.to_string()))?;
    let req = clients
        .s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .presigned(cfg)
        .await
        .map_err(|e| AwsError::new("s3:GetObject (presign)", e))?;
    println!("{}", req.uri());
    eprintln!("valid for {} minutes", expires.as_secs() / 60);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_bounded() {
        assert_eq!(expiry("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(expiry("12h"), Ok(MAX_EXPIRY));
        assert!(expiry("13h").is_err());
        assert!(expiry("0m").is_err());
        assert!(expiry("soon").is_err());
    }
}
