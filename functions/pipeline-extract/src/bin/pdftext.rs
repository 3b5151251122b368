//! Temporary entry point until the Lambda's `main.rs` dispatches to [`pipeline_extract::cli::run`].
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    pipeline_extract::cli::run(&args)
}
