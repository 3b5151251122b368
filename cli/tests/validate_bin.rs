//! The `palisade` binary's validate command, run as an operator would: exit codes and where messages go.

use std::process::Command;

fn palisade(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_palisade")).args(args).output().expect("run palisade")
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const POLICIES: &str = include_str!("../../infra/policies/policies.yaml");

#[test]
fn a_broken_policies_file_exits_1_with_file_and_line() {
    // GIVEN the shipped policies with a bad grace in the first policy
    let line = POLICIES.lines().position(|l| l.trim() == "grace: 1d").unwrap() + 1;
    let p = write("broken.yaml", &POLICIES.replacen("grace: 1d", "grace: soon", 1));
    // WHEN validated
    let out = palisade(&["validate", "policies", p.to_str().unwrap()]);
    // THEN exit 1, and stderr points at the file and line
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("broken.yaml:{line}: policies[0]")), "{err}");
}

#[test]
fn a_good_file_exits_0_and_a_missing_one_or_bad_usage_does_not() {
    let p = write("good.yaml", POLICIES);
    let ok = palisade(&["validate", "policies", p.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("7 policies, valid"));
    let missing = palisade(&["validate", "policies", "/nonexistent/policies.yaml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/policies.yaml"));
    assert_eq!(palisade(&["validate"]).status.code(), Some(2));
}
