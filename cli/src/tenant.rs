//! `palisade validate tenant`: a tenant's configuration (its `samconfig.toml` section) checked before a deploy.
//!
//! The rules come from the pipeline template itself (each parameter's type, default, allowed values and pattern,
//! minimum and maximum), so there is no second list to keep in step with `infra/pipeline.yaml`; on top of them,
//! what the template cannot say: an HTTPS target needs its signing-key secret, and the stack must be named
//! `palisade-pipeline-<tenant>[-<env>]` (the compliance dashboard may read only ledgers named so).

use std::collections::BTreeMap;

use serde_yaml::Value as Yaml;

use crate::validate::Report;

/// How tenant pipeline stacks are named (the compliance dashboard's role reads ledgers of this pattern).
pub const STACK_PREFIX: &str = "palisade-pipeline-";

/// One parameter's rules, as the template declares them.
#[derive(Clone, Debug, Default, PartialEq)]
struct Rule {
    number: bool,
    default: Option<String>,
    allowed_values: Vec<String>,
    pattern: Option<String>,
    min: Option<f64>,
    max: Option<f64>,
}

/// Reads every parameter's rules from the template's `Parameters:` block.
fn rules(template: &str, name: &str) -> Result<BTreeMap<String, Rule>, String> {
    let doc: Yaml = serde_yaml::from_str(template).map_err(|e| format!("{name}: not YAML: {e}"))?;
    let params = doc
        .get("Parameters")
        .and_then(Yaml::as_mapping)
        .ok_or_else(|| format!("{name}: no Parameters block (is it infra/pipeline.yaml?)"))?;
    let text = |v: &Yaml| match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let num = |v: Option<&Yaml>| v.and_then(&text).and_then(|s| s.parse::<f64>().ok());
    let mut out = BTreeMap::new();
    for (k, v) in params {
        let Some(k) = k.as_str() else { continue };
        out.insert(
            k.to_owned(),
            Rule {
                number: v.get("Type").and_then(Yaml::as_str) == Some("Number"),
                default: v.get("Default").and_then(text),
                allowed_values: v
                    .get("AllowedValues")
                    .and_then(Yaml::as_sequence)
                    .map(|s| s.iter().filter_map(text).collect())
                    .unwrap_or_default(),
                pattern: v.get("AllowedPattern").and_then(Yaml::as_str).map(str::to_owned),
                min: num(v.get("MinValue")),
                max: num(v.get("MaxValue")),
            },
        );
    }
    Ok(out)
}

/// `Key=Value Key2="a b"` (SAM's `parameter_overrides` string) into pairs; a token without `=` is a problem.
fn overrides(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut token = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                _ => token.push(c),
            }
            chars.next();
        }
        if quote.is_some() {
            return Err(format!("unclosed quote in {token:?}"));
        }
        match token.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_owned(), v.to_owned())),
            _ => return Err(format!("{token:?} is not Key=Value")),
        }
    }
}

/// Checks one value against its rule; `None` when it passes.
fn check(rule: &Rule, value: &str) -> Option<String> {
    if !rule.allowed_values.is_empty() && !rule.allowed_values.iter().any(|a| a == value) {
        return Some(format!("{value:?} is not one of {}", rule.allowed_values.join(", ")));
    }
    if let Some(p) = &rule.pattern {
        match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(re) if !re.is_match(value) => return Some(format!("{value:?} does not match {p}")),
            Ok(_) => {}
            Err(_) => return Some(format!("the template's pattern {p} is not a valid regular expression")),
        }
    }
    if rule.number {
        let Ok(n) = value.parse::<f64>() else { return Some(format!("{value:?} is not a number")) };
        if rule.min.is_some_and(|m| n < m) || rule.max.is_some_and(|m| n > m) {
            let range = match (rule.min, rule.max) {
                (Some(a), Some(b)) => format!("between {a} and {b}"),
                (Some(a), None) => format!("at least {a}"),
                (None, Some(b)) => format!("at most {b}"),
                (None, None) => String::new(),
            };
            return Some(format!("{value} is not {range}"));
        }
    }
    None
}

/// Validates tenant sections of a samconfig file: `env` names one, or every section whose build template is the
/// pipeline template is checked. `names` are how the files are named in messages.
pub fn validate(samconfig: (&str, &str), template: (&str, &str), env: Option<&str>) -> Report {
    let (src, cfg_name) = samconfig;
    let mut report = Report::default();
    let rules = match rules(template.0, template.1) {
        Ok(r) => r,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    let doc: toml::Table = match src.parse() {
        Ok(d) => d,
        Err(e) => {
            report.errors.push(format!("{cfg_name}: not TOML: {e}"));
            return report;
        }
    };
    let is_tenant = |section: &toml::Value| {
        section
            .get("build")
            .and_then(|b| b.get("parameters"))
            .and_then(|p| p.get("template_file"))
            .and_then(toml::Value::as_str)
            .is_some_and(|t| t.ends_with("pipeline.yaml"))
    };
    let envs: Vec<&String> = match env {
        Some(e) => match doc.get_key_value(e) {
            Some((k, _)) => vec![k],
            None => {
                report.errors.push(format!("{cfg_name}: no [{e}] section"));
                return report;
            }
        },
        None => doc.iter().filter(|(_, v)| is_tenant(v)).map(|(k, _)| k).collect(),
    };
    if envs.is_empty() {
        report.errors.push(format!("{cfg_name}: no tenant section (one whose build template is infra/pipeline.yaml)"));
        return report;
    }
    for e in envs {
        let before = report.errors.len();
        let mut problem = |field: &str, msg: String| report.errors.push(format!("{cfg_name} [{e}] {field}: {msg}"));
        let section = &doc[e.as_str()];
        if !is_tenant(section) {
            problem("build.template_file", format!("is not the pipeline template ({})", template.1));
        }
        let deploy = section.get("deploy").and_then(|d| d.get("parameters"));
        let stack = deploy.and_then(|d| d.get("stack_name")).and_then(toml::Value::as_str).unwrap_or_default();
        let given = match deploy.and_then(|d| d.get("parameter_overrides")) {
            Some(toml::Value::String(s)) => overrides(s),
            Some(toml::Value::Array(a)) => {
                overrides(&a.iter().filter_map(toml::Value::as_str).collect::<Vec<_>>().join(" "))
            }
            Some(_) => Err("must be a string or a list of strings".into()),
            None => Ok(Vec::new()),
        };
        let given = match given {
            Ok(g) => g,
            Err(msg) => {
                problem("deploy.parameter_overrides", msg);
                continue;
            }
        };
        let mut values: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in &given {
            if !rules.contains_key(k) {
                problem(k, format!("is not a parameter of {}", template.1));
            } else if values.insert(k, v).is_some() {
                problem(k, "is given twice".into());
            }
        }
        for (k, rule) in &rules {
            match (values.get(k.as_str()), &rule.default) {
                (Some(v), _) => {
                    if let Some(msg) = check(rule, v) {
                        problem(k, msg);
                    }
                }
                (None, None) => problem(k, format!("is required ({} gives it no default)", template.1)),
                (None, Some(_)) => {}
            }
        }
        let tenant = values.get("Tenant").copied().unwrap_or_default();
        let target = values.get("Target").copied().unwrap_or_default();
        let secret = values.get("TargetSecretArn").copied().unwrap_or_default();
        if target.starts_with("https://") && !secret.starts_with("arn:") {
            problem(
                "TargetSecretArn",
                "an HTTPS target needs the ARN of its signing-key secret (aws secretsmanager create-secret)".into(),
            );
        }
        let secret_arn = secret.starts_with("arn:") && secret.contains(":secretsmanager:");
        if !secret.is_empty() && !secret_arn {
            problem("TargetSecretArn", format!("{secret:?} is not a Secrets Manager secret ARN"));
        }
        let want = format!("{STACK_PREFIX}{tenant}");
        if !tenant.is_empty() && stack != want && !stack.starts_with(&format!("{want}-")) {
            problem(
                "deploy.stack_name",
                format!("{stack:?} should be {want} or {want}-<env>: the compliance dashboard reads ledgers named so"),
            );
        }
        if report.errors.len() == before {
            report.summary.push_str(&format!(
                "{cfg_name} [{e}]: tenant {tenant}, stack {stack}, target {target}: {} parameters valid\n",
                rules.len()
            ));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../../infra/pipeline.yaml");
    const SAMCONFIG: &str = include_str!("../../samconfig.toml");

    fn run(cfg: &str, env: Option<&str>) -> Report {
        validate((cfg, "samconfig.toml"), (TEMPLATE, "infra/pipeline.yaml"), env)
    }

    #[test]
    fn the_shipped_example_tenant_is_valid() {
        let r = run(SAMCONFIG, None);
        assert_eq!(r.errors, Vec::<String>::new());
        assert!(r.summary.contains("[test-tenant-acme]: tenant acme"), "{}", r.summary);
    }

    #[test]
    fn every_problem_is_named_with_its_section_and_field() {
        let cfg = r#"
[t.build.parameters]
template_file = "infra/pipeline.yaml"
[t.deploy.parameters]
stack_name = "acme-pipeline"
parameter_overrides = "Environment=staging Tenant=Acme_1 MaxFileBytes=0 Target=https://x.example.com Colour=blue InboxRetentionDays=ten"
"#;
        let r = run(cfg, Some("t"));
        let joined = r.errors.join("\n");
        for want in [
            "[t] Environment: \"staging\" is not one of local, test, prod",
            "[t] Tenant: \"Acme_1\" does not match",
            "[t] MaxFileBytes: 0 is not at least 1",
            "[t] InboxRetentionDays: \"ten\" is not a number",
            "[t] Colour: is not a parameter of infra/pipeline.yaml",
            "[t] TargetSecretArn: an HTTPS target needs the ARN",
            "[t] deploy.stack_name: \"acme-pipeline\" should be palisade-pipeline-Acme_1",
        ] {
            assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
        }
        assert_eq!(r.exit_code(), 1);
    }

    #[test]
    fn required_parameters_and_bad_input_are_reported() {
        let cfg = "[t.build.parameters]\ntemplate_file = \"infra/pipeline.yaml\"\n[t.deploy.parameters]\nstack_name = \"palisade-pipeline-a\"\nparameter_overrides = \"Tenant=a\"\n";
        let r = run(cfg, Some("t"));
        assert!(r.errors.iter().any(|e| e.contains("[t] Target: is required")), "{:?}", r.errors);
        assert!(run("not = [toml", None).errors[0].contains("not TOML"));
        assert!(run(cfg, Some("nope")).errors[0].contains("no [nope] section"));
        let quoted = overrides(r#"A="x y" B='z' C="#);
        assert_eq!(quoted, Ok(vec![("A".into(), "x y".into()), ("B".into(), "z".into()), ("C".into(), String::new())]));
        assert!(overrides("A=\"x").is_err());
        assert!(overrides("loose").is_err());
    }
}
