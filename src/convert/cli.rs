//! `veer convert FILE...`: reads YAML, prints the converted objects on standard output and the
//! report on standard error. Exit status 0 when everything mapped (the report has `info`
//! entries at most), 2 when something did not map but output was written, 1 when the input could
//! not be read.

use std::{
    io::{Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use serde_json::{Value, json};

use super::{Conversion, Level, Options, convert_with};

/// Arguments of `veer convert`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConvertArgs {
    /// YAML files with Argo Rollouts objects (several documents each); `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// How the report is written to standard error: `text` for people, `json` for scripts
    /// (`{"entries": [...], "summary": {...}}`), `none`.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub report: ReportFormat,
    /// Base URL of the load tester holding the manual gates that indefinite pauses become
    /// (default `http://flagger-loadtester.<namespace>/`).
    #[arg(long, value_name = "URL")]
    pub loadtester_url: Option<String>,
    /// The namespace the output will be applied in, when the Rollouts name none (used for the
    /// load tester's URL only; the objects are written without a namespace, as they were read).
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// The format of the report.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
    None,
}

/// Runs `veer convert`.
pub fn run(args: ConvertArgs) -> ExitCode {
    let code = execute(
        &args,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}

/// `veer convert` with its streams; returns the exit status.
pub fn execute(
    args: &ConvertArgs,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> u8 {
    let mut docs: Vec<Value> = Vec::new();
    let mut stdin_read = false;
    for file in &args.files {
        let (name, text) = if file.as_os_str() == "-" {
            let mut text = String::new();
            if !stdin_read && let Err(e) = stdin.read_to_string(&mut text) {
                let _ = writeln!(stderr, "veer convert: cannot read standard input: {e}");
                return 1;
            }
            stdin_read = true;
            ("standard input".to_string(), text)
        } else {
            match std::fs::read_to_string(file) {
                Ok(text) => (file.display().to_string(), text),
                Err(e) => {
                    let _ = writeln!(stderr, "veer convert: cannot read {}: {e}", file.display());
                    return 1;
                }
            }
        };
        match serde_saphyr::from_multiple::<Value>(&text) {
            Ok(d) => docs.extend(d),
            Err(e) => {
                let _ = writeln!(stderr, "veer convert: {name} is not YAML: {e}");
                return 1;
            }
        }
    }
    let options = Options { loadtester_url: args.loadtester_url.clone(), namespace: args.namespace.clone() };
    let conversion = convert_with(docs, &options);
    if stdout.write_all(conversion.to_yaml().as_bytes()).and_then(|()| stdout.flush()).is_err() {
        return 1;
    }
    let _ = match args.report {
        ReportFormat::Text => stderr.write_all(text_report(&conversion).as_bytes()),
        ReportFormat::Json => writeln!(stderr, "{:#}", json_report(&conversion)),
        ReportFormat::None => Ok(()),
    };
    if conversion.complete() { 0 } else { 2 }
}

fn counts(c: &Conversion) -> [(Level, usize); 3] {
    [Level::Info, Level::Approximated, Level::Unmapped]
        .map(|l| (l, c.report.iter().filter(|e| e.level() == l).count()))
}

/// The report for people: one paragraph per entry, then a summary line.
pub fn text_report(c: &Conversion) -> String {
    let mut out = String::new();
    for e in &c.report {
        out.push_str(&format!("{e}\n"));
    }
    let counts = counts(c).map(|(l, n)| format!("{n} {}", l.as_str())).join(", ");
    let verdict = if c.complete() { "everything mapped" } else { "some things did not map (exit status 2)" };
    out.push_str(&format!(
        "veer convert: {} objects written; report: {counts}; {verdict}\n",
        c.objects.len()
    ));
    out
}

/// The report for scripts.
pub fn json_report(c: &Conversion) -> Value {
    let mut summary = serde_json::Map::new();
    summary.insert("objects".into(), json!(c.objects.len()));
    for (l, n) in counts(c) {
        summary.insert(l.as_str().into(), json!(n));
    }
    summary.insert("complete".into(), json!(c.complete()));
    json!({
        "entries": c.report.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
        "summary": summary,
    })
}
