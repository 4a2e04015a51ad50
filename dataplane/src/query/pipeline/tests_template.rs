//! Template execution: Go template semantics and every function Loki offers, through
//! `line_format` (the timestamp is 2023-11-14T22:13:20.123456789Z).

use super::template::{CompiledTemplate, Data, Env};

struct Map(Vec<(String, String)>);

impl Data for Map {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn entries(&self) -> Vec<(String, String)> {
        self.0.clone()
    }
}

const TS: i64 = 1_700_000_000_123_456_789;

/// The output of `src` over labels `a=...` (or `ERR: <message>`).
fn exec_with(src: &str, labels: &[(&str, &str)], line: &str) -> String {
    let t = match CompiledTemplate::new("line", src) {
        Ok(t) => t,
        Err(e) => return format!("PARSE: {e}"),
    };
    let mut sorted: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    sorted.sort();
    let data = Map(sorted);
    let mut out = String::new();
    match t.execute(&Env { data: &data, line: line.as_bytes(), ts: TS }, &mut out) {
        Ok(()) => out,
        Err(e) => format!("ERR: {e}"),
    }
}

fn exec(src: &str) -> String {
    exec_with(src, &[("app", "api"), ("n", "42"), ("f", "1.5"), ("s", "Hello World"), ("empty", "")], "the line")
}

fn check(cases: &[(&str, &str)]) {
    for (src, want) in cases {
        assert_eq!(exec(src), *want, "template {src}");
    }
}

#[test]
fn fields_and_text() {
    check(&[
        ("{{.app}}", "api"),
        ("x={{.missing}}!", "x=!"),
        ("{{ .app }}-{{.n}}", "api-42"),
        ("{{- .app -}}  ", "api"),
        ("{{/* comment */}}ok", "ok"),
        ("{{.}}", "map[app:api empty: f:1.5 n:42 s:Hello World]"),
        ("{{ .app.x }}", "ERR: template: line: executing \"line\" at <.x>: can't evaluate field x in type string"),
    ]);
}

#[test]
fn control_structures() {
    check(&[
        ("{{if .app}}yes{{else}}no{{end}}", "yes"),
        ("{{if .empty}}yes{{else}}no{{end}}", "no"),
        ("{{if eq .app \"x\"}}1{{else if eq .app \"api\"}}2{{else}}3{{end}}", "2"),
        ("{{with .app}}[{{.}}]{{end}}", "[api]"),
        ("{{with .empty}}[{{.}}]{{else}}none{{end}}", "none"),
        ("{{range $k, $v := .}}{{$k}}={{$v}};{{end}}", "app=api;empty=;f=1.5;n=42;s=Hello World;"),
        ("{{range $i := 3}}{{$i}}{{end}}", "012"),
        ("{{range $i := 5}}{{if eq $i 2}}{{continue}}{{end}}{{if eq $i 4}}{{break}}{{end}}{{$i}}{{end}}", "013"),
        ("{{range 0}}x{{else}}empty{{end}}", "empty"),
        ("{{$x := .app}}{{$x}}{{$x = \"b\"}}{{$x}}", "apib"),
        ("{{define \"t\"}}<{{.}}>{{end}}{{template \"t\" .app}}", "<api>"),
        ("{{block \"b\" .n}}[{{.}}]{{end}}", "[42]"),
        ("{{ $.app }}", "api"),
    ]);
}

#[test]
fn builtins() {
    check(&[
        ("{{and .app .empty}}|{{or .empty .app}}|{{not .empty}}", "|api|true"),
        ("{{and 1 0 2}}{{or 0 \"\" 3}}", "03"),
        ("{{len .app}} {{len .}}", "3 5"),
        ("{{index . \"app\"}}", "api"),
        ("{{slice .app 1 2}}", "p"),
        ("{{print 1 2 \"a\" \"b\" 3}}", "1 2ab3"),
        ("{{println .app 1}}", "api 1\n"),
        (
            "{{printf \"%s=%d %5.2f %-4s| %x %q %v %t %03d %e %%\" .app 7 3.14159 \"ab\" 255 \"q\" 1.5 true 5 1234.5}}",
            "api=7  3.14 ab  | ff \"q\" 1.5 true 005 1.234500e+03 %",
        ),
        ("{{printf \"%d\" .app}}", "%!d(string=api)"),
        ("{{printf \"%s\"}}", "%!s(MISSING)"),
        ("{{html \"<a href='x'>&\\\"\"}}", "&lt;a href=&#39;x&#39;&gt;&amp;&#34;"),
        ("{{js \"it's <b>\"}}", "it\\'s \\u003Cb\\u003E"),
        ("{{urlquery \"a b&c\"}}", "a+b%26c"),
        (
            "{{eq .app \"api\" \"x\"}} {{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt \"b\" \"a\"}} {{ge 1.5 2.5}}",
            "true true true true true false",
        ),
        (
            "{{eq .n 42}}",
            "ERR: template: line: executing \"line\" at <eq>: error calling eq: incompatible types for comparison",
        ),
        ("{{ .app | printf \"%s!\" }}", "api!"),
    ]);
}

#[test]
fn loki_string_functions() {
    check(&[
        ("{{ToLower .s}} {{ToUpper .s}}", "hello world HELLO WORLD"),
        ("{{Replace .s \"o\" \"0\" 1}}|{{Replace .s \"o\" \"0\" -1}}", "Hell0 World|Hell0 W0rld"),
        ("{{Trim \"xxhixx\" \"x\"}} {{TrimLeft \"xxhi\" \"x\"}} {{TrimRight \"hixx\" \"x\"}}", "hi hi hi"),
        ("{{TrimPrefix .s \"Hello \"}} {{TrimSuffix .s \" World\"}} [{{TrimSpace \"  a \"}}]", "World Hello [a]"),
        ("{{regexReplaceAll \"(\\\\w+) (\\\\w+)\" .s \"${2}_$1\"}}", "World_Hello"),
        ("{{regexReplaceAllLiteral \"o\" .s \"$1\"}}", "Hell$1 W$1rld"),
        ("{{count \"o\" .s}}", "2"),
        ("{{urlencode \"a b/c?d\"}} {{urldecode \"a+b%2Fc\"}}", "a+b%2Fc%3Fd a b/c"),
        (
            "{{urldecode \"%zz\"}}",
            "ERR: template: line: executing \"line\" at <urldecode>: error calling urldecode: invalid URL escape \"%zz\"",
        ),
        (
            "[{{alignLeft 5 .app}}][{{alignRight 5 .app}}][{{alignLeft 2 .app}}][{{alignRight 2 .app}}]",
            "[api  ][  api][ap][pi]",
        ),
        (
            "{{regexReplaceAll \"(\" .s \"x\"}}",
            "ERR: template: line: executing \"line\" at <regexReplaceAll>: error calling regexReplaceAll: error parsing regexp: missing closing ): `(`",
        ),
    ]);
}

#[test]
fn sprig_string_functions() {
    check(&[
        ("{{lower .s}} {{upper .s}} {{title \"hello wor-ld\"}}", "hello world HELLO WORLD Hello Wor-Ld"),
        ("{{trunc 3 .s}}|{{trunc -3 .s}}|{{trunc 50 .s}}", "Hel|rld|Hello World"),
        ("{{substr 1 4 .s}}|{{substr -1 3 .s}}|{{substr 6 -1 .s}}", "ell|Hel|World"),
        ("{{contains \"World\" .s}} {{hasPrefix \"He\" .s}} {{hasSuffix \"x\" .s}}", "true true false"),
        ("{{indent 2 \"a\\nb\"}}|{{nindent 2 \"a\"}}", "  a\n  b|\n  a"),
        ("{{replace \"l\" \"L\" .s}} {{repeat 3 \"ab\"}}", "HeLLo WorLd ababab"),
        (
            "[{{trim \" x \"}}][{{trimAll \"$\" \"$5$\"}}][{{trimSuffix \"-\" \"a-\"}}][{{trimPrefix \"-\" \"-a\"}}]",
            "[x][5][a][a]",
        ),
        ("{{b64enc .app}} {{b64dec \"YXBp\"}} {{b64dec \"!!\"}}", "YXBp api illegal base64 data at input byte 0"),
        ("{{.app | upper | lower}}", "api"),
        ("{{default \"d\" .empty}} {{default \"d\" .app}} {{.empty | default \"x\"}}", "d api x"),
    ]);
}

#[test]
fn math_functions() {
    check(&[
        ("{{add 1 2 .n}} {{sub .n 2}} {{mul 2 3 4}} {{div 7 2}} {{mod 7 2}}", "45 40 24 3 1"),
        ("{{add1 1}}", "PARSE: template: line:1: function \"add1\" not defined"),
        (
            "{{div 1 0}}",
            "ERR: template: line: executing \"line\" at <div>: error calling div: runtime error: integer divide by zero",
        ),
        ("{{addf 0.1 0.2}} {{subf 1 0.9}} {{mulf 1.1 3}} {{divf 1 3}}", "0.3 0.1 3.3 0.3333333333333333"),
        ("{{max 1 5 3}} {{min 4 2 8}} {{maxf 1.5 2.5}} {{minf 1.5 -2.5}}", "5 2 2.5 -2.5"),
        ("{{ceil 1.2}} {{floor 1.8}} {{round 1.2345 2}} {{round 1.5 0}}", "2 1 1.23 2"),
        ("{{int \"12\"}} {{int .f}} {{float64 .f}} {{int \"200.0\"}}", "12 0 1.5 200"),
        ("{{add .f 1}} {{addf .f 1}}", "1 2.5"),
        ("{{ .n | int | add 1 }}", "43"),
        ("{{ trunc (int \"2\") .app }}", "ap"),
        (
            "{{ trunc (add 1 1) .app }}",
            "ERR: template: line: executing \"line\" at <trunc>: wrong type for value; expected int; got int64",
        ),
        ("{{ 1.5e6 }} {{ 3 }} {{ 0x10 }}", "1.5e+06 3 16"),
    ]);
}

#[test]
fn conversion_functions() {
    check(&[
        ("{{bytes \"1KB\"}} {{bytes \"2KiB\"}}", "1000 2048"),
        ("{{duration \"1m30s\"}} {{duration_seconds \"500ms\"}}", "90 0.5"),
        (
            "{{bytes \"x\"}}",
            "ERR: template: line: executing \"line\" at <bytes>: error calling bytes: strconv.ParseFloat: parsing \"\": invalid syntax",
        ),
        ("{{fromJson \"{\\\"a\\\":{\\\"b\\\":[1,2]}}\"}}", "map[a:map[b:[1 2]]]"),
        ("{{(fromJson \"{\\\"a\\\":1}\").a}} {{(fromJson \"{\\\"a\\\":1}\").b}}", "1 <no value>"),
    ]);
}

#[test]
fn time_functions() {
    check(&[
        ("{{ __timestamp__ }}", "2023-11-14 22:13:20.123456789 +0000 UTC"),
        ("{{ __timestamp__ | date \"2006-01-02T15:04:05.000Z07:00\" }}", "2023-11-14T22:13:20.123Z"),
        ("{{ date \"Mon Jan _2 3:04PM 06 .999\" __timestamp__ }}", "Tue Nov 14 10:13PM 23 .123"),
        (
            "{{ __timestamp__ | unixEpoch }} {{ __timestamp__ | unixEpochMillis }} {{ unixEpochNanos __timestamp__ }}",
            "1700000000 1700000000123 1700000000123456789",
        ),
        ("{{ toDate \"2006-01-02\" \"2024-02-29\" | unixEpoch }}", "1709164800"),
        ("{{ toDate \"2006-01-02\" \"bad\" }}", "0001-01-01 00:00:00 +0000 UTC"),
        ("{{ toDateInZone \"2006-01-02 15:04\" \"UTC\" \"2024-01-02 03:04\" | unixEpoch }}", "1704164640"),
        ("{{ toDate \"2006-01-02T15:04:05Z07:00\" \"2024-01-01T02:00:00+02:00\" | unixEpoch }}", "1704067200"),
        (
            "{{ unixToTime \"1700000000\" }} {{ unixToTime \"1700000000123\" | unixEpochMillis }}",
            "2023-11-14 22:13:20 +0000 UTC 1700000000123",
        ),
        ("{{ unixToTime \"19373\" | date \"2006-01-02\" }}", "2023-01-16"),
        (
            "{{ unixToTime \"abc\" }}",
            "ERR: template: line: executing \"line\" at <unixToTime>: error calling unixToTime: unable to parse time 'abc': strconv.ParseInt: parsing \"abc\": invalid syntax",
        ),
        ("{{ (__timestamp__).Unix }}", "1700000000"),
        ("{{ date \"2006\" 0 }}", "1970"),
    ]);
    assert!(exec("{{ now | unixEpoch }}").parse::<i64>().is_ok_and(|n| n > 1_700_000_000));
}

#[test]
fn line_function() {
    assert_eq!(exec("{{ __line__ }}"), "the line");
    assert_eq!(exec("{{ __line__ | trunc 3 }}!"), "the!");
    // `.__line__` is a label lookup, as in Loki: empty.
    assert_eq!(exec("[{{ .__line__ }}]"), "[]");
}

#[test]
fn argument_type_errors() {
    check(&[
        ("{{ ToUpper 3 }}", "ERR: template: line: executing \"line\" at <ToUpper>: expected string; found 3"),
        ("{{ trunc \"a\" .app }}", "ERR: template: line: executing \"line\" at <trunc>: expected integer; found \"a\""),
        (
            "{{ trunc 1 }}",
            "ERR: template: line: executing \"line\" at <trunc>: wrong number of args for trunc: want 2 got 1",
        ),
        ("{{ .app 1 }}", "ERR: template: line: executing \"line\" at <.app>: can't give argument to non-function .app"),
        ("{{ nosuch }}", "PARSE: template: line:1: function \"nosuch\" not defined"),
    ]);
}

#[test]
fn runaway_templates_are_stopped() {
    assert!(exec("{{ repeat 100000000 \"abc\" }}").contains("exceeds the template output limit"));
    assert!(exec("{{ range $i := 100000000 }}{{ $i }}{{ end }}").starts_with("ERR:"));
    assert!(
        exec("{{ define \"t\" }}{{ template \"t\" . }}{{ end }}{{ template \"t\" . }}")
            .contains("maximum template depth")
    );
    assert!(exec("{{ alignLeft 1000000000 .app }}").starts_with("ERR:"));
    assert_eq!(exec("{{ printf \"%999999999d\" 1 }}").len(), 1 << 16);
}
