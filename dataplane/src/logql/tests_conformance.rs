//! Every query of the LogQL conformance scripts (`shared/conformance/logqltest/*.logqltest`)
//! must parse, print and parse back to the same tree, except the cases that expect a failure
//! Loki raises while parsing, which must fail with Loki's wording.

use std::path::{Path, PathBuf};

use super::super::*;

/// Queries expected to fail at parse time although their script gives no message to check.
const PARSE_FAILURES_WITHOUT_MESSAGE: &[&str] = &[
    // label_replace with an invalid regex.
    r#""app", "(")"#,
];

fn scripts_dir() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../../shared/conformance/logqltest"),
        manifest.join("../shared/conformance/logqltest"),
        PathBuf::from("/work/shared/conformance/logqltest"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
}

struct Case {
    file: String,
    line: usize,
    query: String,
    fail: Option<Expectation>,
}

enum Expectation {
    Any,
    Msg(String),
    Regex(String),
}

fn extract(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let file = path.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    let lines: Vec<&str> = text.lines().collect();
    let mut cases = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let query = if let Some(rest) = line.strip_prefix("eval instant at ") {
            rest.split_once(' ').map(|(_, q)| q)
        } else if let Some(rest) = line.strip_prefix("eval range from ") {
            // <t0> to <t1> step <s> <query>
            let mut parts = rest.splitn(6, ' ');
            parts.nth(5)
        } else {
            None
        };
        let Some(query) = query else { continue };
        let mut fail = None;
        for next in &lines[i + 1..] {
            if !next.starts_with(' ') && !next.starts_with('\t') {
                break;
            }
            let t = next.trim();
            if let Some(m) = t.strip_prefix("expect fail msg:") {
                fail = Some(Expectation::Msg(m.trim().to_string()));
            } else if let Some(r) = t.strip_prefix("expect fail regex:") {
                fail = Some(Expectation::Regex(r.trim().to_string()));
            } else if t == "expect fail" {
                fail = Some(Expectation::Any);
            }
        }
        cases.push(Case { file: file.clone(), line: i + 1, query: query.trim().to_string(), fail });
    }
    cases
}

#[test]
fn conformance_queries_parse_and_round_trip() {
    let dir = scripts_dir().expect("the conformance scripts (shared/conformance/logqltest) are missing");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "logqltest"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .logqltest file in {}", dir.display());

    let mut problems = Vec::new();
    let (mut total, mut parse_failures) = (0, 0);
    for path in &files {
        for case in extract(path) {
            total += 1;
            let at = format!("{}:{}: {}", case.file, case.line, case.query);
            match (parse_expr(&case.query), &case.fail) {
                (Ok(e), _) => {
                    let printed = e.to_string();
                    match parse_expr(&printed) {
                        Ok(again) if again == e => {}
                        Ok(_) => problems.push(format!("{at}\n  printed {printed:?} parses to another tree")),
                        Err(err) => problems.push(format!("{at}\n  printed {printed:?} fails: {err}")),
                    }
                }
                (Err(err), None) => problems.push(format!("{at}\n  unexpected error: {err}")),
                (Err(err), Some(exp)) => {
                    parse_failures += 1;
                    let msg = err.to_string();
                    let matched = match exp {
                        Expectation::Msg(m) => msg.contains(m.as_str()),
                        Expectation::Regex(r) => regex::Regex::new(r).is_ok_and(|re| re.is_match(&msg)),
                        Expectation::Any => PARSE_FAILURES_WITHOUT_MESSAGE.iter().any(|s| case.query.contains(s)),
                    };
                    if !matched {
                        problems.push(format!("{at}\n  failed with a different error: {msg}"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    assert_eq!(total, 841, "the scripts hold 841 eval cases");
    // The cases whose failure Loki raises while parsing the query (see NOTES.md).
    assert_eq!(parse_failures, 51);
}
