//! The LogQL parser and printer: no input panics or overflows the stack, and every query that
//! parses prints (both `Display`, Loki's `String()` form, and `pretty`, `format_query`'s layout)
//! to text that parses back to the same tree, whose printed text is the same again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use norn::logql::{MAX_QUERY_BYTES, parse_expr, pretty};

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else { return };
    let Ok(expr) = parse_expr(query) else { return };
    // Debug rather than PartialEq, so that a NaN literal equals itself.
    let tree = format!("{expr:?}");

    let printed = expr.to_string();
    // Printing may lengthen a query (quoting, spaces) past the length limit; such a text is
    // refused by design, not by a printer bug.
    if printed.len() < MAX_QUERY_BYTES {
        let again = parse_expr(&printed).unwrap_or_else(|e| panic!("printed {printed:?} of {query:?} fails: {e}"));
        assert_eq!(format!("{again:?}"), tree, "printed {printed:?} of {query:?} parses to another tree");
        assert_eq!(again.to_string(), printed, "printing is not stable for {query:?}");
    }

    let laid_out = pretty(&expr);
    if laid_out.len() < MAX_QUERY_BYTES {
        let again = parse_expr(&laid_out).unwrap_or_else(|e| panic!("pretty {laid_out:?} of {query:?} fails: {e}"));
        assert_eq!(format!("{again:?}"), tree, "pretty {laid_out:?} of {query:?} parses to another tree");
    }
});
