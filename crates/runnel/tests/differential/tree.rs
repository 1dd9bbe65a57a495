//! Flattens a decoded response into `path = value` leaves, from its pretty `Debug` form,
//! so that two responses can be compared field by field and every difference named by a
//! path (`topics.0.partitions.1.error_code`) that the differences file can refer to.

use std::collections::BTreeMap;

#[derive(PartialEq)]
enum Frame {
    /// `Name {`: children are `field: …`.
    Struct,
    /// `[`: children are elements, numbered.
    Seq(usize),
    /// `Name(`: a tuple struct; a single child adds no path segment.
    Tuple,
}

/// The leaves of `{:#?}` output, keyed by path. Type names are dropped; `Some(x)` and
/// one-field wrappers such as `TopicName("t")` are transparent. An element of a list that
/// has a `name` field is addressed by it (`topics[orders].error_code`), so that lists are
/// compared by name, not by position.
pub fn flatten(debug: &str) -> BTreeMap<String, String> {
    let leaves = flatten_positional(debug);
    // "a.3" -> "a[x]" for every element "a.3" with a leaf "a.3.name" = "x"; longest first,
    // so that a nested element is renamed before its parent's prefix changes.
    let mut named: Vec<(String, String)> = leaves
        .iter()
        .filter_map(|(path, value)| {
            let elem = path.strip_suffix(".name")?;
            let (list, index) = elem.rsplit_once('.')?;
            index.parse::<usize>().ok()?;
            Some((elem.to_string(), format!("{list}[{}]", value.trim_matches('"'))))
        })
        .collect();
    named.sort_by_key(|(elem, _)| std::cmp::Reverse(elem.len()));
    leaves
        .into_iter()
        .map(|(mut path, value)| {
            for (elem, keyed) in &named {
                if path == *elem || path.starts_with(&format!("{elem}.")) {
                    path = format!("{keyed}{}", &path[elem.len()..]);
                }
            }
            (path, value)
        })
        .collect()
}

fn flatten_positional(debug: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut path: Vec<String> = Vec::new();
    let mut frames: Vec<(Frame, bool)> = Vec::new(); // (frame, pushed a path segment)
    for raw in debug.lines() {
        let line = raw.trim().trim_end_matches(',');
        if line.is_empty() {
            continue;
        }
        if matches!(line, "}" | "]" | ")") {
            if let Some((_, pushed)) = frames.pop() {
                if pushed {
                    path.pop();
                }
            }
            continue;
        }
        // `field: rest` inside a struct; otherwise the whole line is an element.
        let (key, rest) = match frames.last() {
            Some((Frame::Struct, _)) => match line.split_once(": ") {
                Some((k, r)) => (Some(k.to_string()), r),
                None => (None, line),
            },
            _ => (None, line),
        };
        let segment = match (key, frames.last_mut()) {
            (Some(k), _) => Some(k),
            (None, Some((Frame::Seq(n), _))) => {
                *n += 1;
                Some((*n - 1).to_string())
            }
            _ => None,
        };
        let opens = if rest.ends_with('{') {
            Some(Frame::Struct)
        } else if rest.ends_with('[') {
            Some(Frame::Seq(0))
        } else if rest.ends_with('(') {
            Some(Frame::Tuple)
        } else {
            None
        };
        match opens {
            Some(frame) => {
                let pushed = segment.is_some();
                if let Some(s) = segment {
                    path.push(s);
                }
                frames.push((frame, pushed));
            }
            None => {
                let mut p = path.clone();
                if let Some(s) = segment {
                    p.push(s);
                }
                // Empty collections print on one line: `[]`, `{}`.
                out.insert(p.join("."), rest.to_string());
            }
        }
    }
    out
}

/// `*` matches any run of characters (dots included); everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)]
    #[derive(Debug)]
    struct Inner {
        code: i16,
        name: Option<String>,
    }
    #[allow(dead_code)]
    #[derive(Debug)]
    struct Wrap(String);
    #[allow(dead_code)]
    #[derive(Debug)]
    struct Outer {
        id: Wrap,
        items: Vec<Inner>,
        empty: Vec<u8>,
    }

    #[test]
    fn flattens_nested_debug_output() {
        let v = Outer {
            id: Wrap("x".into()),
            items: vec![Inner { code: 3, name: Some("a".into()) }, Inner { code: 0, name: None }],
            empty: vec![],
        };
        let f = flatten(&format!("{v:#?}"));
        let got: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("empty", "[]"),
                ("id", "\"x\""),
                ("items[None].code", "0"),
                ("items[None].name", "None"),
                ("items[a].code", "3"),
                ("items[a].name", "\"a\""),
            ]
        );
    }

    #[test]
    fn glob_matches_paths() {
        assert!(glob("*throttle_time_ms", "throttle_time_ms"));
        assert!(glob("topics.*.topic_id", "topics.0.topic_id"));
        assert!(!glob("topics.*.topic_id", "topics.0.name"));
        assert!(glob("*", "anything"));
        assert!(glob("a*b*c", "a-x-b-y-c"));
        assert!(!glob("a*b*c", "a-x-c"));
    }
}
