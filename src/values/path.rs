//! Value paths such as `ingress.hosts[0].host` or `ingress.annotations."cert-manager.io/issuer"`.

use serde_json::{Map, Value as Json};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(pub Vec<Segment>);

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if k.contains(['.', '[', '"']) {
                        write!(f, "\"{k}\"")?;
                    } else {
                        f.write_str(k)?;
                    }
                }
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl Path {
    /// Parses `a.b[0]."c.d"`. Returns a message saying what is wrong.
    pub fn parse(text: &str) -> Result<Path, String> {
        let mut segs = Vec::new();
        let mut chars = text.chars().peekable();
        let mut expect_key = true;
        while let Some(&c) = chars.peek() {
            if expect_key {
                let key = if c == '"' {
                    chars.next();
                    let mut k = String::new();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some(ch) => k.push(ch),
                            None => return Err(format!("unclosed quote in path `{text}`")),
                        }
                    }
                    k
                } else {
                    let mut k = String::new();
                    while let Some(&ch) = chars.peek() {
                        if ch == '.' || ch == '[' {
                            break;
                        }
                        k.push(ch);
                        chars.next();
                    }
                    k
                };
                if key.is_empty() {
                    return Err(format!("empty key in path `{text}`"));
                }
                segs.push(Segment::Key(key));
                expect_key = false;
            } else if c == '.' {
                chars.next();
                expect_key = true;
            } else if c == '[' {
                chars.next();
                let mut n = String::new();
                loop {
                    match chars.next() {
                        Some(']') => break,
                        Some(d) if d.is_ascii_digit() => n.push(d),
                        _ => return Err(format!("bad list index in path `{text}`")),
                    }
                }
                let idx = n
                    .parse::<usize>()
                    .ok()
                    .filter(|&i| i < 1000)
                    .ok_or_else(|| format!("bad list index in path `{text}`"))?;
                segs.push(Segment::Index(idx));
            } else {
                return Err(format!("unexpected `{c}` in path `{text}`"));
            }
        }
        if expect_key {
            return Err(format!("path `{text}` is empty or ends with `.`"));
        }
        Ok(Path(segs))
    }

    pub fn keys(keys: &[&str]) -> Path {
        Path(keys.iter().map(|k| Segment::Key(k.to_string())).collect())
    }

    /// The value at this path, if any.
    pub fn get<'a>(&self, root: &'a Json) -> Option<&'a Json> {
        let mut cur = root;
        for seg in &self.0 {
            cur = match (seg, cur) {
                (Segment::Key(k), Json::Object(m)) => m.get(k)?,
                (Segment::Index(i), Json::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// `self` is a prefix of (or equal to) `other`.
    pub fn is_prefix_of(&self, other: &Path) -> bool {
        other.0.len() >= self.0.len() && other.0[..self.0.len()] == self.0[..]
    }

    /// Sets `value` at this path inside `overrides`. Helm replaces lists whole, so when
    /// the path goes through a list index, the list is first copied into `overrides`
    /// from what it already holds or else from `base` (the chart's merged values).
    pub fn set(&self, overrides: &mut Map<String, Json>, base: &Json, value: Json) {
        let Some(Segment::Key(first)) = self.0.first() else {
            return;
        };
        let mut cur: &mut Json = overrides
            .entry(first.clone())
            .or_insert_with(|| Json::Object(Map::new()));
        let mut in_copy = false;
        for (i, seg) in self.0.iter().enumerate().skip(1) {
            // Entering a list: materialise it from base when overrides lack it.
            if let Segment::Index(_) = seg {
                if !cur.is_array() {
                    let from_base = (!in_copy)
                        .then(|| Path(self.0[..i].to_vec()))
                        .and_then(|prefix| prefix.get(base).filter(|v| v.is_array()).cloned());
                    *cur = from_base.unwrap_or_else(|| Json::Array(Vec::new()));
                }
                in_copy = true;
            }
            cur = match seg {
                Segment::Key(k) => {
                    if !cur.is_object() {
                        *cur = Json::Object(Map::new());
                    }
                    let Json::Object(m) = cur else { unreachable!() };
                    m.entry(k.clone()).or_insert(Json::Null)
                }
                Segment::Index(idx) => {
                    let Json::Array(a) = cur else { unreachable!() };
                    while a.len() <= *idx {
                        a.push(Json::Object(Map::new()));
                    }
                    &mut a[*idx]
                }
            };
        }
        *cur = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_prints() {
        for text in [
            "a",
            "a.b",
            "hosts[0].host",
            "a.\"cert-manager.io/x\".b",
            "t[0][1]",
        ] {
            let p = Path::parse(text).expect(text);
            assert_eq!(p.to_string(), text);
        }
        for bad in ["", "a.", ".a", "a[x]", "a[0", "\"a", "a..b"] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_through_a_list_copies_it_from_base() {
        let base = json!({"ingress": {"hosts": [{"host": "chart-example.local", "paths": [{"path": "/"}]}]}});
        let mut o = Map::new();
        Path::parse("ingress.hosts[0].host")
            .unwrap()
            .set(&mut o, &base, json!("a.example.com"));
        Path::parse("ingress.enabled")
            .unwrap()
            .set(&mut o, &base, json!(true));
        assert_eq!(
            Json::Object(o),
            json!({"ingress": {"hosts": [{"host": "a.example.com", "paths": [{"path": "/"}]}], "enabled": true}})
        );
    }

    #[test]
    fn set_creates_missing_lists_and_maps() {
        let mut o = Map::new();
        Path::parse("tls[0].hosts[1]")
            .unwrap()
            .set(&mut o, &json!({}), json!("h"));
        assert_eq!(Json::Object(o), json!({"tls": [{"hosts": [{}, "h"]}]}));
    }
}
