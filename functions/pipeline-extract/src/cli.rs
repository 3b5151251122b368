//! Command line: `text FILE`, `quote FILE` and `bench`, for people, the robustness corpus and the benchmark.
//!
//! ```text
//! pipeline-extract text FILE                 plain text, pages separated by form feeds
//! pipeline-extract quote [--rules DIR] FILE  the quote as JSON (with the layout that matched)
//! pipeline-extract bench [--rules DIR] [--iterations N] FILE...
//!                                            extracts every file N times in this process; prints documents per
//!                                            second (wall clock, and per CPU-second where Linux tells)
//! ```
//! Exit status: 0 on success (also for `text` on a PDF without a text layer, which prints a warning), 1 when the
//! file is refused (`error: <reason>` on stderr), 2 on bad usage.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use crate::extract::extract_quote;
use crate::pdf::{self, Limits, PdfError};
use crate::rules::RuleSet;

const USAGE: &str = "usage: pipeline-extract text FILE
       pipeline-extract quote [--rules DIR] FILE
       pipeline-extract bench [--rules DIR] [--iterations N] FILE...";

/// Runs a command; `args` excludes the program name.
pub fn run(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("text") => match args {
            [_, file] => text(file),
            _ => usage(),
        },
        Some("quote") => match options(&args[1..]) {
            Some(o) if o.files.len() == 1 && o.iterations.is_none() => quote(&o.files[0], o.rules.as_deref()),
            _ => usage(),
        },
        Some("bench") => match options(&args[1..]) {
            Some(o) if !o.files.is_empty() => bench(&o.files, o.rules.as_deref(), o.iterations.unwrap_or(10)),
            _ => usage(),
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

struct Options {
    rules: Option<String>,
    iterations: Option<usize>,
    files: Vec<String>,
}

fn options(args: &[String]) -> Option<Options> {
    let mut o = Options { rules: None, iterations: None, files: Vec::new() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rules" => o.rules = Some(it.next()?.clone()),
            "--iterations" => o.iterations = Some(it.next()?.parse().ok().filter(|&n| n > 0)?),
            "--" => o.files.extend(it.by_ref().cloned()),
            flag if flag.starts_with("--") => return None,
            file => o.files.push(file.to_owned()),
        }
    }
    Some(o)
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

fn read(file: &str, limits: &Limits) -> Result<Vec<u8>, ExitCode> {
    let meta = std::fs::metadata(file).map_err(|e| fail(format!("cannot read {file}: {e}")))?;
    if meta.len() > limits.max_input_bytes as u64 {
        return Err(fail(PdfError::TooLarge {
            size: usize::try_from(meta.len()).unwrap_or(usize::MAX),
            limit: limits.max_input_bytes,
        }));
    }
    std::fs::read(file).map_err(|e| fail(format!("cannot read {file}: {e}")))
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn emit(s: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(format!("cannot write the output: {e}")),
    }
}

fn rules(dir: Option<&str>) -> Result<RuleSet, ExitCode> {
    match dir {
        Some(d) => RuleSet::load_dir(d),
        None => RuleSet::embedded(),
    }
    .map_err(fail)
}

fn text(file: &str) -> ExitCode {
    pdf::show_unmapped_glyphs();
    let limits = Limits::document();
    let bytes = match read(file, &limits) {
        Ok(b) => b,
        Err(code) => return code,
    };
    match pdf::text(&bytes, &limits) {
        Ok(t) => emit(&t),
        Err(PdfError::NoText) => {
            eprintln!("warning: {}", PdfError::NoText);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn quote(file: &str, rules_dir: Option<&str>) -> ExitCode {
    let limits = Limits::quote();
    let (rules, bytes) = match (rules(rules_dir), read(file, &limits)) {
        (Ok(r), Ok(b)) => (r, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    match extract_quote(&bytes, &rules, &limits) {
        Ok(x) => match serde_json::to_string_pretty(&x) {
            Ok(json) => emit(&(json + "\n")),
            Err(e) => fail(e),
        },
        Err(e) => {
            use palisade_shared::error::Classify;
            fail(format_args!("{e} [{}]", e.code()))
        }
    }
}

fn bench(files: &[String], rules_dir: Option<&str>, iterations: usize) -> ExitCode {
    let limits = Limits::quote();
    let rules = match rules(rules_dir) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut docs = Vec::with_capacity(files.len());
    for f in files {
        match read(f, &limits) {
            Ok(b) => docs.push(b),
            Err(code) => return code,
        }
    }
    let (mut ok, mut failed) = (0usize, 0usize);
    let cpu_before = cpu_time();
    let started = Instant::now();
    for _ in 0..iterations {
        for d in &docs {
            match extract_quote(d, &rules, &limits) {
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let n = ok + failed;
    let mut line = format!(
        "files={} iterations={iterations} documents={n} ok={ok} failed={failed} seconds={secs:.3} docs_per_sec={:.1}",
        docs.len(),
        n as f64 / secs.max(1e-9)
    );
    if let (Some(a), Some(b)) = (cpu_before, cpu_time()) {
        let cpu = b.saturating_sub(a).as_secs_f64();
        line.push_str(&format!(" cpu_seconds={cpu:.3} docs_per_cpu_sec={:.1}", n as f64 / cpu.max(1e-9)));
    }
    emit(&(line + "\n"))
}

/// CPU time this process has run (the scheduler's count, Linux only): on a busy machine, documents per CPU-second
/// measure the extractor rather than its neighbours.
fn cpu_time() -> Option<std::time::Duration> {
    let s = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(std::time::Duration::from_nanos(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn bad_usage_exits_2() {
        for a in [
            &[][..],
            &["text"],
            &["text", "a", "b"],
            &["quote"],
            &["bench"],
            &["bench", "--iterations", "0", "f"],
            &["frob"],
        ] {
            assert_eq!(run(&args(a)), ExitCode::from(2), "{a:?}");
        }
    }

    #[test]
    fn options_parse() {
        let o = options(&args(&["--rules", "d", "--iterations", "3", "a.pdf", "--", "--b.pdf"])).unwrap();
        assert_eq!((o.rules.as_deref(), o.iterations, o.files), (Some("d"), Some(3), args(&["a.pdf", "--b.pdf"])));
        assert!(options(&args(&["--rules"])).is_none());
        assert!(options(&args(&["--what"])).is_none());
    }

    #[test]
    fn missing_files_fail_cleanly() {
        assert_eq!(run(&args(&["text", "/nonexistent/x.pdf"])), ExitCode::FAILURE);
        assert_eq!(run(&args(&["quote", "/nonexistent/x.pdf"])), ExitCode::FAILURE);
    }
}
