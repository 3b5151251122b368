//! `palisade exceptions`: the exceptions file in the stack's config bucket, edited as text so that the security
//! team's comments and layout survive. Every edit is parsed with palisade-policy against the policies file
//! before it is written, and written only if the file is unchanged since it was read (its ETag).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use palisade_policy::{Exception, Exceptions, PolicySet, Scope};
use palisade_shared::error::AwsError;
use serde_yaml::{Mapping, Value};

use crate::table::Table;
use crate::{CliError, Clients, print_json};

const POLICIES_KEY: &str = "policies/policies.yaml";
const EXCEPTIONS_KEY: &str = "policies/exceptions.yaml";
const NAME: &str = "exceptions.yaml";

/// A new exception, as given on the command line.
#[derive(Debug, Clone)]
pub struct NewException {
    /// The policy it excuses.
    pub policy: String,
    /// One resource id, or
    pub resource: Option<String>,
    /// tags that must all match.
    pub tags: BTreeMap<String, String>,
    /// Why.
    pub reason: String,
    /// Who agreed.
    pub granted_by: String,
    /// When it ends, as it is to be written (a date or an RFC 3339 time).
    pub expires: String,
}

/// `--expires`: a date (kept as written), an RFC 3339 time, or a duration from `now`.
pub fn expires_text(s: &str, now: DateTime<Utc>) -> Result<String, String> {
    if NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() || DateTime::parse_from_rfc3339(s).is_ok() {
        return Ok(s.to_owned());
    }
    let d: palisade_policy::Duration = s
        .parse()
        .map_err(|_| format!("{s:?} is not a date (2027-01-31), an RFC 3339 time or a duration (30m, 4h, 3d, 2w)"))?;
    Ok((now + d.as_delta()).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `src` with `new` appended to its `exceptions:` list, checked by parsing it against `policies`.
pub fn append(src: &str, new: &NewException, policies: &PolicySet) -> Result<String, Vec<String>> {
    let before = parse(src, policies)?.iter().count();
    let mut m = Mapping::new();
    m.insert("policy".into(), new.policy.clone().into());
    if let Some(r) = &new.resource {
        m.insert("resource".into(), r.clone().into());
    }
    if !new.tags.is_empty() {
        let tags: Mapping = new.tags.iter().map(|(k, v)| (Value::from(k.clone()), Value::from(v.clone()))).collect();
        m.insert("tags".into(), Value::Mapping(tags));
    }
    m.insert("reason".into(), new.reason.clone().into());
    m.insert("granted-by".into(), new.granted_by.clone().into());
    m.insert("expires".into(), new.expires.clone().into());
    let body = serde_yaml::to_string(&Value::Mapping(m)).map_err(|e| vec![e.to_string()])?;
    // Indent like the items already there; a file with none gets a fresh `exceptions:` list.
    let lines: Vec<&str> = src.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("exceptions:"));
    let item_indent = header.and_then(|h| {
        lines[h + 1..].iter().find(|l| l.trim_start().starts_with("- ")).map(|l| &l[..l.len() - l.trim_start().len()])
    });
    let (mut out, indent) = match (header, item_indent) {
        (Some(_), Some(indent)) if before > 0 => (src.trim_end_matches('\n').to_owned() + "\n", indent.to_owned()),
        _ => {
            let kept: Vec<&str> = lines.iter().copied().filter(|l| !l.starts_with("exceptions:")).collect();
            let mut s = kept.join("\n");
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str("exceptions:\n");
            (s, "  ".to_owned())
        }
    };
    for (i, line) in body.lines().enumerate() {
        let lead = if i == 0 { format!("{indent}- ") } else { format!("{indent}  ") };
        out.push_str(&lead);
        out.push_str(line);
        out.push('\n');
    }
    let after = parse(&out, policies)?;
    let added = after.iter().last();
    if after.iter().count() != before + 1 || added.map(|e| &e.policy) != Some(&new.policy) {
        return Err(vec![format!("{NAME}: could not append to this file's layout; edit it by hand")]);
    }
    Ok(out)
}

/// `src` with the `index`th exception (0-based, file order) ending at `now`.
pub fn expire(src: &str, index: usize, now: DateTime<Utc>, policies: &PolicySet) -> Result<String, Vec<String>> {
    let current = parse(src, policies)?;
    let items: Vec<&Exception> = current.iter().collect();
    let total = items.len();
    let item =
        items.get(index).ok_or_else(|| vec![format!("there is no exception {} (the file has {total})", index + 1)])?;
    let hand = || vec![format!("{NAME}: cannot find exception {}'s `expires:` line; edit it by hand", index + 1)];
    let start = item.line.ok_or_else(hand)?.saturating_sub(1);
    let end = items.get(index + 1).and_then(|e| e.line).map_or(usize::MAX, |l| l - 1);
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut found = false;
    let mut out = String::with_capacity(src.len() + 16);
    for (i, line) in src.lines().enumerate() {
        let body = line.trim_start().trim_start_matches("- ").trim_start();
        if !found && (start..end).contains(&i) && body.starts_with("expires:") {
            let key_at = line.len() - body.len();
            out.push_str(&line[..key_at]);
            out.push_str("expires: ");
            out.push_str(&stamp);
            found = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !found {
        return Err(hand());
    }
    let after = parse(&out, policies)?;
    let ok = after.iter().nth(index).is_some_and(|e| e.policy == item.policy && e.is_expired(now));
    if !ok || after.iter().count() != total {
        return Err(hand());
    }
    Ok(out)
}

fn parse(src: &str, policies: &PolicySet) -> Result<Exceptions, Vec<String>> {
    Exceptions::parse(src, NAME, policies).map_err(|es| es.iter().map(ToString::to_string).collect())
}

fn scope(e: &Exception) -> String {
    match &e.scope {
        Scope::Resource(id) => id.clone(),
        Scope::Tags(t) => t.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
    }
}

/// The config bucket's two files, with the exceptions file's ETag (none when it does not exist yet).
struct Files {
    bucket: String,
    policies: PolicySet,
    exceptions: String,
    etag: Option<String>,
}

async fn get(c: &Clients, bucket: &str, key: &str) -> Result<Option<(String, Option<String>)>, CliError> {
    match c.s3.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => {
            let etag = o.e_tag.clone();
            let bytes =
                o.body.collect().await.map_err(|e| CliError::Other(format!("reading s3://{bucket}/{key}: {e}")))?;
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| CliError::Other(format!("{key} is not UTF-8")))?;
            Ok(Some((text, etag)))
        }
        Err(e) => {
            let e = AwsError::new("s3:GetObject", e);
            if e.is_code("NoSuchKey") { Ok(None) } else { Err(e.into()) }
        }
    }
}

async fn load(c: &Clients, stack: &str) -> Result<Files, CliError> {
    let st = c.stack(stack).await?;
    let bucket = st.physical("ConfigBucket")?.to_owned();
    let (policies_src, _) = get(c, &bucket, POLICIES_KEY).await?.ok_or_else(|| {
        CliError::Input(format!("s3://{bucket}/{POLICIES_KEY} does not exist; upload the policies first"))
    })?;
    let policies = PolicySet::parse(&policies_src, "policies.yaml").map_err(|es| {
        CliError::Input(format!(
            "the stored policies file is invalid:\n{}",
            es.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
        ))
    })?;
    let (exceptions, etag) = get(c, &bucket, EXCEPTIONS_KEY).await?.unwrap_or_default();
    Ok(Files { bucket, policies, exceptions, etag })
}

async fn store(c: &Clients, f: &Files, text: String) -> Result<(), CliError> {
    let mut req = c.s3.put_object().bucket(&f.bucket).key(EXCEPTIONS_KEY).body(text.into_bytes().into());
    req = match &f.etag {
        Some(etag) => req.if_match(etag),
        None => req.if_none_match("*"),
    };
    req.send().await.map_err(|e| {
        let e = AwsError::new("s3:PutObject", e);
        if e.is_code("PreconditionFailed") || e.is_code("ConditionalRequestConflict") {
            CliError::Input(format!("s3://{}/{EXCEPTIONS_KEY} changed while editing; run again", f.bucket))
        } else {
            e.into()
        }
    })?;
    Ok(())
}

fn invalid(errors: Vec<String>) -> CliError {
    CliError::Input(format!("the change was not written:\n{}", errors.join("\n")))
}

/// `palisade exceptions list`.
pub async fn list(c: &Clients, stack: &str, json: bool) -> Result<(), CliError> {
    let f = load(c, stack).await?;
    let ex = parse(&f.exceptions, &f.policies)
        .map_err(|es| CliError::Input(format!("the stored exceptions file is invalid:\n{}", es.join("\n"))))?;
    if json {
        return print_json(&ex.iter().collect::<Vec<_>>());
    }
    let now = Utc::now();
    let mut t = Table::new(["#", "POLICY", "SCOPE", "EXPIRES", "GRANTED BY", "STATUS", "REASON"]);
    for (i, e) in ex.iter().enumerate() {
        t.row([
            (i + 1).to_string(),
            e.policy.clone(),
            scope(e),
            e.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.granted_by.clone(),
            if e.is_expired(now) { "expired" } else { "active" }.to_owned(),
            e.reason.clone(),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// `palisade exceptions add`.
pub async fn add(c: &Clients, stack: &str, new: &NewException) -> Result<(), CliError> {
    let f = load(c, stack).await?;
    let text = append(&f.exceptions, new, &f.policies).map_err(invalid)?;
    store(c, &f, text).await?;
    println!("added an exception to {} until {}", new.policy, new.expires);
    Ok(())
}

/// `palisade exceptions expire`: `number` as printed by `list` (1-based).
pub async fn expire_now(c: &Clients, stack: &str, number: usize) -> Result<(), CliError> {
    let f = load(c, stack).await?;
    let text = expire(&f.exceptions, number.saturating_sub(1), Utc::now(), &f.policies).map_err(invalid)?;
    store(c, &f, text).await?;
    println!("exception {number} expired; the next scan no longer applies it");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICIES: &str = include_str!("../../infra/policies/policies.yaml");
    const EXCEPTIONS: &str = include_str!("../../infra/policies/exceptions.yaml");

    fn set() -> PolicySet {
        PolicySet::parse(POLICIES, "policies.yaml").unwrap()
    }

    fn new(policy: &str) -> NewException {
        NewException {
            policy: policy.into(),
            resource: None,
            tags: BTreeMap::from([("team".into(), "data: platform".into())]),
            reason: "Migration window: agreed in #sec-42.".into(),
            granted_by: "bob@example.com".into(),
            expires: "2027-03-01".into(),
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn appending_keeps_comments_and_adds_one_valid_entry() {
        // GIVEN the shipped file WHEN a tag exception with awkward characters is appended
        let out = append(EXCEPTIONS, &new("s3-default-encryption"), &set()).unwrap();
        // THEN the comments are still there and the new entry parses with its scope and end
        assert!(out.starts_with(EXCEPTIONS.trim_end()));
        let ex = Exceptions::parse(&out, NAME, &set()).unwrap();
        let last = ex.iter().last().unwrap();
        assert_eq!(last.scope, Scope::Tags(BTreeMap::from([("team".into(), "data: platform".into())])));
        assert_eq!(last.expires_at, "2027-03-02T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(ex.iter().count(), 2);
    }

    #[test]
    fn appending_to_an_empty_or_missing_file_starts_the_list() {
        for src in ["", "# nothing yet\n", "exceptions: []\n"] {
            let out = append(src, &new("s3-default-encryption"), &set()).unwrap_or_else(|e| panic!("{src:?}: {e:?}"));
            assert_eq!(Exceptions::parse(&out, NAME, &set()).unwrap().iter().count(), 1, "{out}");
        }
    }

    #[test]
    fn an_exception_for_an_unknown_policy_is_refused_with_its_line() {
        let errs = append(EXCEPTIONS, &new("no-such-policy"), &set()).unwrap_err();
        assert!(errs.iter().any(|e| e.starts_with("exceptions.yaml:") && e.contains("no-such-policy")), "{errs:?}");
    }

    #[test]
    fn expiring_rewrites_only_that_entry() {
        // GIVEN two exceptions WHEN the second is expired
        let two = append(EXCEPTIONS, &new("s3-default-encryption"), &set()).unwrap();
        let out = expire(&two, 1, now(), &set()).unwrap();
        // THEN it ends now, the first is untouched, and a missing number is refused
        let ex = Exceptions::parse(&out, NAME, &set()).unwrap();
        let items: Vec<_> = ex.iter().collect();
        assert!(!items[0].is_expired(now()));
        assert_eq!(items[1].expires_at, now());
        assert!(expire(&two, 5, now(), &set()).unwrap_err()[0].contains("no exception 6"));
    }

    #[test]
    fn expires_takes_a_date_a_time_or_a_duration() {
        assert_eq!(expires_text("2027-01-31", now()).unwrap(), "2027-01-31");
        assert_eq!(expires_text("2027-01-31T18:00:00Z", now()).unwrap(), "2027-01-31T18:00:00Z");
        assert_eq!(expires_text("3d", now()).unwrap(), "2026-11-26T10:00:00Z");
        assert!(expires_text("soon", now()).is_err());
    }
}
