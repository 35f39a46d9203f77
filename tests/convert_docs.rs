//! The worked example of `docs/migrate-from-argo-rollouts.md` shows what `veer convert` prints:
//! the YAML and the report shown on the page are those of the Argo manifests the page writes, with
//! the load tester URL of the page's environment. (`e2e_docs.rs` runs the page's commands.)

use std::path::Path;

use veer::convert::{Options, convert_with, text_report};

const PAGE: &str = "docs/migrate-from-argo-rollouts.md";

fn page() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(PAGE)).expect("the page")
}

/// The lines of the heredoc that starts at the line `opening`.
fn heredoc(text: &str, opening: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.trim() != opening);
    assert!(lines.next().is_some(), "{PAGE}: no line {opening:?}");
    lines.take_while(|l| l.trim() != "EOF").map(|l| format!("{l}\n")).collect()
}

/// The body of the fenced block that follows the marker `<!-- shown: NAME -->`.
fn shown(text: &str, name: &str) -> String {
    let marker = format!("<!-- shown: {name} -->");
    let mut lines = text.lines().skip_while(|l| l.trim() != marker).skip(1);
    let fence = lines.next().unwrap_or_else(|| panic!("{PAGE}: no block after {marker}"));
    assert!(fence.starts_with("```"), "{PAGE}: {marker} is not followed by a block");
    lines.take_while(|l| !l.starts_with("```")).map(|l| format!("{l}\n")).collect()
}

/// The value the page's first env block gives a variable (`export NAME=value   # ...`).
fn exported(text: &str, name: &str) -> String {
    let prefix = format!("export {name}=");
    let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{PAGE}: no {prefix}"));
    line[prefix.len()..].split_whitespace().next().unwrap().to_string()
}

#[test]
fn the_worked_example_shows_what_veer_convert_prints() {
    let text = page();
    let input = heredoc(&text, "cat > argo.yaml <<'EOF'");
    let ns = exported(&text, "NS");
    let url = exported(&text, "LOADTESTER_URL").replace("$NS", &ns);
    assert_eq!(url, "http://flagger-loadtester.test/");
    let docs = serde_saphyr::from_multiple(&input).expect("the page's Argo manifests are YAML");
    let options = Options { loadtester_url: Some(url), namespace: None };
    let c = convert_with(docs, &options);
    assert_eq!(shown(&text, "veer.yaml"), c.to_yaml(), "the YAML shown on the page");
    assert_eq!(shown(&text, "report"), text_report(&c), "the report shown on the page");
    assert!(c.complete(), "the page says the command exits with 0");
}
