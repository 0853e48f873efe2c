//! The fast reader of a candidate file's top level, tried before serde_json (issue 11: reading
//! the models with serde_json's visitor was a fifth of a full sync's own CPU time).
//!
//! It reads the bytes once, with the lexer it shares with the webhook's reader
//! ([`json_scan`](crate::json_scan), UTF-8 checked only where a string holds a byte past ASCII),
//! nothing decoded but the kept top-level values. It
//! answers `None` whenever it is not sure that serde_json would read the file exactly the same
//! way: invalid JSON of any kind, but also an escape in a key, a `\u` surrogate, a number that
//! might be out of `f64`'s range, nesting deeper than [`MAX_DEPTH`]. The caller then reads the
//! file with serde_json, which decides (and words the error of a malformed model) as before. So a
//! file this reader accepts is one serde_json accepts with the same top level, and every other
//! file gets serde_json's answer.

use std::borrow::Cow;

use super::{Fields, HACKOLADE_ONLY_KEYS, KEPT_KEYS, Seen, TopLevel};
use crate::json_scan::{Checks, Lexer};

/// Nesting this reader follows; serde_json refuses past 128, so deeper files are left to it.
const MAX_DEPTH: u32 = 100;

/// The top level of `content` (a byte order mark already stripped), or `None` when serde_json
/// must decide.
pub(super) fn top_level(content: &[u8]) -> Option<TopLevel<'_>> {
    let mut s = Scanner {
        lx: Lexer::new(content, Checks::AsRead),
    };
    s.lx.ws();
    let top = if s.lx.peek()? == b'{' {
        TopLevel::Object(s.top_object()?)
    } else {
        s.lx.skip(MAX_DEPTH)?;
        TopLevel::NotAnObject
    };
    s.lx.at_end().then_some(top)
}

struct Scanner<'a> {
    lx: Lexer<'a>,
}

impl<'a> Scanner<'a> {
    /// The top-level object: its kept keys and how many distinct Hackolade-only keys it has,
    /// as `TopLevelVisitor::visit_map` makes them.
    fn top_object(&mut self) -> Option<Fields<'a>> {
        let mut fields = Fields {
            kept: KEPT_KEYS.iter().map(|_| None).collect(),
            hackolade_only_keys: 0,
        };
        let mut hackolade_only_seen = [false; HACKOLADE_ONLY_KEYS.len()];
        self.lx.eat(b'{')?;
        self.lx.ws();
        if self.lx.peek()? == b'}' {
            self.lx.i += 1;
            return Some(fields);
        }
        loop {
            let key = self.lx.string()?;
            if key.escaped {
                return None;
            }
            let key = key.content();
            if let Some(i) = HACKOLADE_ONLY_KEYS.iter().position(|k| k.as_bytes() == key) {
                hackolade_only_seen[i] = true;
            }
            self.lx.eat(b':')?;
            self.lx.ws();
            match KEPT_KEYS.iter().position(|k| k.as_bytes() == key) {
                Some(i) => fields.kept[i] = Some(self.seen()?),
                None => self.lx.skip(MAX_DEPTH - 1)?,
            }
            match self.lx.next_token()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
        fields.hackolade_only_keys = hackolade_only_seen.iter().filter(|s| **s).count();
        Some(fields)
    }

    /// A kept top-level value, as `SeenVisitor` makes it.
    fn seen(&mut self) -> Option<Seen<'a>> {
        Some(match self.lx.peek()? {
            b'"' => {
                let s = self.lx.string()?;
                if s.escaped {
                    Seen::Text(Cow::Owned(serde_json::from_slice::<String>(s.raw).ok()?))
                } else {
                    Seen::Text(Cow::Borrowed(std::str::from_utf8(s.content()).ok()?))
                }
            }
            b'-' | b'0'..=b'9' => {
                let token = self.lx.number()?;
                // serde_json's own reading and printing of it, as `SeenVisitor` gets it.
                let number: serde_json::Number = serde_json::from_slice(token).ok()?;
                Seen::Number(number.to_string())
            }
            b'[' => Seen::Array(self.lx.skip_array(MAX_DEPTH - 1)?),
            b'{' => {
                self.lx.skip_object(MAX_DEPTH - 1)?;
                Seen::Object
            }
            _ => {
                self.lx.skip(0)?;
                Seen::Other
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Classification, classify};
    use super::*;

    fn accepts(text: &[u8]) -> bool {
        top_level(text).is_some()
    }

    #[test]
    fn plain_json_is_read_here() {
        assert!(accepts(
            b" {\"a\": [1, -2.5e10, \"x\\n\\u00e9\", {\"b\": null}], \"c\": true, \"d\": \"caf\xC3\xA9\"} "
        ));
        assert!(accepts(b"[]"));
        assert!(accepts(b"\"x\""));
        assert!(accepts(b"0"));
    }

    #[test]
    fn whatever_serde_json_might_read_otherwise_is_left_to_it() {
        for text in [
            &b""[..],
            b"{",
            b"{\"a\":1,}",
            b"[1,]",
            b"01",
            b"-",
            b"1.",
            b"1e",
            b"1e400",
            b"\"\\ud800\"",
            b"\"\\ude00\"",
            b"\"a\tb\"",
            b"\"caf\xE9\"",
            b"{\"k\\u0041\":1}",
            b"{} x",
            b"tru",
            b"\"\\x\"",
        ] {
            assert!(!accepts(text), "{:?}", String::from_utf8_lossy(text));
        }
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_DEPTH as usize + 1),
            "]".repeat(MAX_DEPTH as usize + 1)
        );
        assert!(!accepts(deep.as_bytes()));
    }

    #[test]
    fn a_kept_value_with_escapes_or_a_number_is_read_as_serde_json_reads_it() {
        let text = br#"{"modelName":"a\"b\u00e9","persistenceSchemaVersion":-0,"dbVersion":1.50}"#;
        let Some(TopLevel::Object(fields)) = top_level(text) else {
            panic!("read here")
        };
        assert!(matches!(fields.get("modelName"), Some(Seen::Text(t)) if t == "a\"bé"));
        assert!(matches!(fields.get("persistenceSchemaVersion"), Some(Seen::Number(n)) if n == "-0.0"));
        assert!(matches!(fields.get("dbVersion"), Some(Seen::Number(n)) if n == "1.5"));
        assert!(
            matches!(classify("m.json", text), Classification::Malformed(e) if e.contains("collections is missing"))
        );
    }

    mod never_accepts_what_serde_json_refuses {
        use super::*;
        use proptest::prelude::*;

        /// Bytes close to JSON: pieces of it in any order.
        fn near_json() -> impl Strategy<Value = Vec<u8>> {
            const PIECES: &[&[u8]] = &[
                b"{",
                b"}",
                b"[",
                b"]",
                b",",
                b":",
                b" ",
                b"\"",
                b"\\",
                b"u",
                b"d800",
                b"00e9",
                b"n",
                b"\"k\"",
                b"0",
                b"7",
                b"-",
                b".",
                b"e",
                b"+",
                b"true",
                b"nul",
                b"\xC3\xA9",
                b"\xE9",
                b"\t",
                b"\x01",
            ];
            let piece = prop::sample::select(PIECES);
            prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
        }

        /// A JSON document with one byte inserted, replaced or removed somewhere.
        fn json_with_one_byte_changed() -> impl Strategy<Value = Vec<u8>> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(serde_json::Value::from),
                "[a-z é\"\\\\\u{1}\u{10000}]{0,6}".prop_map(serde_json::Value::from),
            ];
            let value = leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                    prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            });
            const BYTES: &[u8] = b"{}[],:\" \\/0123456789-+.eEtrufalsn\t\n\x01\x7F\x80\xC3\xE9\xFF";
            (
                value,
                any::<bool>(),
                any::<usize>(),
                prop::sample::select(BYTES),
                0..3u8,
            )
                .prop_map(|(value, pretty, at, byte, how)| {
                    let mut bytes = if pretty {
                        serde_json::to_vec_pretty(&value).unwrap()
                    } else {
                        serde_json::to_vec(&value).unwrap()
                    };
                    let at = at % (bytes.len() + 1);
                    match how {
                        0 => bytes.insert(at, byte),
                        1 if at < bytes.len() => bytes[at] = byte,
                        _ if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ => {}
                    }
                    bytes
                })
        }

        proptest! {
            #[test]
            fn for_json_with_one_byte_changed(bytes in json_with_one_byte_changed()) {
                if accepts(&bytes) {
                    prop_assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(), "{:?}", String::from_utf8_lossy(&bytes));
                }
            }

            #[test]
            fn for_bytes_close_to_json(bytes in near_json()) {
                if accepts(&bytes) {
                    prop_assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(), "{:?}", String::from_utf8_lossy(&bytes));
                }
            }
        }
    }
}
