//! Tests of the Go template parser.

use super::super::template::*;

fn err(src: &str) -> String {
    match parse(src) {
        Ok(t) => panic!("{src:?}: expected an error, got {t:?}"),
        Err(e) => e.to_string(),
    }
}

fn ok(src: &str) -> Template {
    parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"))
}

#[test]
fn text_fields_and_pipes() {
    assert_eq!(ok("").root, vec![]);
    assert_eq!(ok("plain").root, vec![Node::Text("plain".into())]);
    let t = ok("a {{ .x.y | ToUpper | printf \"%s!\" }} b");
    assert_eq!(t.root.len(), 3);
    let Node::Action(p) = &t.root[1] else {
        panic!("not an action: {:?}", t.root[1]);
    };
    assert_eq!(p.cmds.len(), 3);
    assert_eq!(p.cmds[0].args, vec![Arg::Field(vec!["x".into(), "y".into()])]);
    assert_eq!(p.cmds[1].args, vec![Arg::Function("ToUpper".into())]);
    assert_eq!(p.cmds[2].args, vec![Arg::Function("printf".into()), Arg::Str("%s!".into())]);
}

#[test]
fn trim_markers_and_comments() {
    assert_eq!(
        ok("a  {{- .b -}}  c").root,
        vec![
            Node::Text("a".into()),
            Node::Action(Pipeline {
                decl: vec![],
                is_assign: false,
                cmds: vec![Command { args: vec![Arg::Field(vec!["b".into()])] }]
            }),
            Node::Text("c".into())
        ]
    );
    assert_eq!(ok("{{/* note */}}x").root, vec![Node::Text("x".into())]);
    assert_eq!(ok("a {{- /* note */ -}} b").root, vec![Node::Text("a".into()), Node::Text("b".into())]);
    assert_eq!(err("{{/* note */ .x}}"), "template: line:1: comment ends before closing delimiter");
    assert_eq!(err("{{/* note"), "template: line:1: unclosed comment");
}

#[test]
fn control_structures() {
    let t = ok(r#"{{ if eq .a "b" }}y{{ else if .c }}z{{ else }}w{{ end }}"#);
    let Node::If(b) = &t.root[0] else { panic!("not an if") };
    assert_eq!(b.body, vec![Node::Text("y".into())]);
    let Some(else_body) = &b.else_body else { panic!("no else") };
    let Node::If(nested) = &else_body[0] else { panic!("no else if") };
    assert_eq!(nested.else_body, Some(vec![Node::Text("w".into())]));
    ok(
        "{{ range $i, $e := .list }}{{ $i }}={{ $e }}{{ if $e }}{{ break }}{{ end }}{{ continue }}{{ else }}none{{ end }}",
    );
    ok("{{ with .a }}{{ . }}{{ else with .b }}{{ . }}{{ end }}");
    ok(r#"{{ define "x" }}[{{ . }}]{{ end }}{{ template "x" .a }}{{ block "y" . }}d{{ end }}"#);
    ok("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}{{ $ }}");
    let t = ok("{{ (.a).b }}{{ 1 }}{{ 1.5 }}{{ 0x10 }}{{ 'a' }}{{ `raw` }}{{ nil | print }}{{ true }}");
    let Node::Action(p) = &t.root[0] else { panic!("not an action") };
    assert!(matches!(&p.cmds[0].args[0], Arg::Chain(_, f) if f == &vec!["b".to_string()]));
    let Node::Action(p) = &t.root[4] else { panic!("not an action") };
    assert!(matches!(p.cmds[0].args[0], Arg::Number { int: Some(97), .. }));
}

#[test]
fn errors_read_like_go() {
    assert_eq!(err("{{ nosuchfunc }}"), r#"template: line:1: function "nosuchfunc" not defined"#);
    assert_eq!(err("a\n{{ nosuchfunc }}"), r#"template: line:2: function "nosuchfunc" not defined"#);
    assert_eq!(err("{{ $y }}"), r#"template: line:1: undefined variable "$y""#);
    assert_eq!(err("{{ break }}"), "template: line:1: {{break}} outside {{range}}");
    assert_eq!(err("{{ if .a }}x"), "template: line:1: unexpected EOF");
    assert_eq!(err("{{ end }}"), "template: line:1: unexpected {{end}}");
    assert_eq!(err("{{ else }}"), "template: line:1: unexpected {{else}}");
    assert_eq!(err("{{ .a "), "template: line:1: unclosed action");
    assert_eq!(err(r#"{{ "x }}"#), "template: line:1: unterminated quoted string");
    assert_eq!(err(r#"{{ .a | "x" }}"#), "template: line:1: non executable command in pipeline stage 2");
    assert_eq!(err("{{ }}"), "template: line:1: missing value for command");
    assert_eq!(err("{{ if }}{{ end }}"), "template: line:1: missing value for if");
    assert_eq!(err("{{ # }}"), r##"template: line:1: unexpected "#" in command"##);
    assert_eq!(err(r#"{{ "x".y }}"#), r#"template: line:1: unexpected . after term "\"x\"""#);
    assert_eq!(err("{{ (.a }}"), "template: line:1: unclosed left paren");
    assert_eq!(err("{{ .a) }}"), "template: line:1: unexpected right paren U+0029 ')'");
    assert_eq!(err("{{ 1x }}"), r#"template: line:1: bad number syntax: "1x""#);
    assert_eq!(
        parse_named("label", "{{ nope }}").err().map(|e| e.to_string()).as_deref(),
        Some(r#"template: label:1: function "nope" not defined"#)
    );
}

#[test]
fn loki_functions_are_known() {
    ok(
        r#"{{ __line__ | lower }} {{ regexReplaceAll "a(.)" .x "${1}" }} {{ .ts | unixEpochMillis }} {{ alignLeft 5 .x }}"#,
    );
    ok(r#"{{ printf "\x1b[31m%s\x1b[0m" .msg }}"#);
    ok(r#"{{ default "none" .x | trunc 3 | b64enc }}"#);
}
