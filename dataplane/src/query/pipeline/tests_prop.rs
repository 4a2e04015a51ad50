//! Property tests: no input line makes a stage panic, and block candidates never miss a line
//! the filter keeps.

use proptest::prelude::*;

use super::tests::{pipeline, stream};

/// Pipelines exercising every stage kind.
const QUERIES: &[&str] = &[
    r#"{app="a"} | json"#,
    r#"{app="a"} | json a="x.y[0]", b="[\"k\"]""#,
    r#"{app="a"} | logfmt --strict --keep-empty"#,
    r#"{app="a"} | logfmt a, b="c""#,
    r#"{app="a"} | unpack | logfmt"#,
    r#"{app="a"} | regexp `(?P<a>\w+)(?P<b>\d+)?`"#,
    r#"{app="a"} | pattern `<a> [<b>] <_>`"#,
    r#"{app="a"} |> "<_> x <_>" | decolorize"#,
    r#"{app="a"} |= ip("10.0.0.0/8") or ip("::1-::ff")"#,
    r#"{app="a"} | logfmt | a > 1 or b > 1s or c > 1KB or d = ip("1.2.3.4")"#,
    r#"{app="a"} | line_format "{{ __line__ | trunc 5 | upper }} {{ .a | default \"x\" }} {{ __line__ | urldecode }}""#,
    r#"{app="a"} | line_format "{{ __line__ | fromJson }} {{ __line__ | b64dec }} {{ toDate \"2006-01-02 Jan\" __line__ }}""#,
    r#"{app="a"} | logfmt | label_format x="{{ .a | int | add 1 }}{{ bytes .b }}", y=a | drop x | keep y, a"#,
];

fn lines() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        "[ -~]{0,60}".prop_map(String::into_bytes),
        r#"\{("[a-z_.]{0,4}":("[a-z\\"]{0,5}"|[0-9tfn{}\[\],]{0,6}),?){0,4}\}?"#.prop_map(String::into_bytes),
        r#"([a-z=" ]{0,8}=("[^"]{0,5}"?|[a-z0-9]{0,4}) ?){0,5}"#.prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn stages_do_not_panic(line in lines(), md_value in "[ -~]{0,5}") {
        for q in QUERIES {
            let p = pipeline(q);
            let mut sp = p.for_stream(&stream(r#"{app="a", b="s"}"#));
            let md = [("m", md_value.as_str())];
            if let Some(out) = sp.process(1, &line, &md) {
                prop_assert!(out.labels.all.is_sorted());
                prop_assert_eq!(out.labels.hash, out.labels.all.fingerprint(""));
            }
        }
    }

    #[test]
    fn candidates_keep_every_passing_line(lines in proptest::collection::vec("[abc= ]{0,12}", 1..40), needle in "[abc=]{1,3}") {
        let mut chunk = crate::chunk::MemChunk::new(crate::chunk::Codec::None, 1 << 20);
        for (i, l) in lines.iter().enumerate() {
            chunk.append(i as i64, l.as_bytes(), &[]).expect("append");
        }
        use crate::chunk::ChunkReader;
        let block = chunk.block_handles(0, i64::MAX).expect("handles").into_iter().next().expect("block").decode().expect("decode");
        for q in [format!(r#"{{app="a"}} |= "{needle}""#), format!(r#"{{app="a"}} |~ "{needle}[ab]*c""#)] {
            let p = pipeline(&q);
            let mut sp = p.for_stream(&stream(r#"{app="a"}"#));
            let kept: Vec<usize> = (0..lines.len()).filter(|&i| sp.process(0, lines[i].as_bytes(), &[]).is_some()).collect();
            match p.candidates(&block) {
                Some(c) => {
                    let passing: Vec<usize> = c.into_iter().filter(|&i| sp.process(0, lines[i].as_bytes(), &[]).is_some()).collect();
                    prop_assert_eq!(passing, kept);
                }
                None => prop_assert!(needle.len() < 3 && q.contains("|~")),
            }
        }
    }
}
