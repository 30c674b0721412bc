//! Statement text as bytes in the client's character set, and the `&str` stand-in the proxy
//! parses and rewrites.
//!
//! A client may send any bytes a character set allows (latin1 `é` is `E9`, a `_binary'…'`
//! literal anything), but the parser needs `&str`. [`decode`] makes that text losslessly:
//! every byte that is not part of a character read as UTF-8 becomes one *stand-in*
//! character (U+F700 + the byte, from the Private Use Area), and [`encode`] turns stand-ins
//! back into their bytes. Rewrites copy literals and comments as text, so what the backend
//! receives is byte for byte what the client sent except where the proxy changed it.
//!
//! The character set matters for where literals end: in gbk, big5, sjis, cp932 and euckr the
//! second byte of a character may be ASCII (`\xd5\x5c` is one gbk character whose second
//! byte is `\`), so a lexer reading bytes would end or extend a literal early. [`decode`]
//! turns both bytes of such a character into stand-ins, so no lexer sees an ASCII byte that
//! is not an ASCII character. References: MariaDB `strings/ctype-gbk.c`, `ctype-big5.c`,
//! `ctype-sjis.c`, `ctype-cp932.c`, `ctype-euc_kr.c` (`ismbchar`).

use std::borrow::Cow;

/// How a character set's bytes make characters, as far as lexing SQL cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// utf8mb3, utf8mb4: valid UTF-8 is read as text, other bytes become stand-ins.
    Utf8,
    /// No byte of a multibyte character is ASCII: the single-byte sets, `binary`, and the
    /// EUC sets whose characters are bytes 0x80 and up (ujis, eucjpms, gb2312). Every byte
    /// from 0x80 up becomes a stand-in.
    HighBytes,
    /// A lead byte may be followed by an ASCII trail byte.
    DoubleByte(DoubleByte),
}

/// The character sets whose second byte may be ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoubleByte {
    Gbk,
    Big5,
    /// sjis and cp932.
    Sjis,
    Euckr,
}

impl DoubleByte {
    fn lead(self, b: u8) -> bool {
        match self {
            DoubleByte::Gbk | DoubleByte::Euckr => (0x81..=0xfe).contains(&b),
            DoubleByte::Big5 => (0xa1..=0xf9).contains(&b),
            DoubleByte::Sjis => matches!(b, 0x81..=0x9f | 0xe0..=0xfc),
        }
    }

    fn trail(self, b: u8) -> bool {
        match self {
            DoubleByte::Gbk => matches!(b, 0x40..=0x7e | 0x80..=0xfe),
            DoubleByte::Big5 => matches!(b, 0x40..=0x7e | 0xa1..=0xfe),
            DoubleByte::Sjis => matches!(b, 0x40..=0x7e | 0x80..=0xfc),
            DoubleByte::Euckr => matches!(b, 0x41..=0x5a | 0x61..=0x7a | 0x81..=0xfe),
        }
    }
}

impl Charset {
    /// The lexing of a MariaDB character set by name (`latin1`, `utf8mb4`, `gbk`, …); `None`
    /// for one the proxy cannot lex safely: the wide sets (ucs2, utf16, utf16le, utf32, which
    /// no server accepts from a client anyway), `swe7` (whose ASCII positions hold letters),
    /// and names it does not know.
    pub fn named(name: &str) -> Option<Charset> {
        let name = name.to_ascii_lowercase();
        Some(match name.as_str() {
            "utf8" | "utf8mb3" | "utf8mb4" => Charset::Utf8,
            "gbk" => Charset::DoubleByte(DoubleByte::Gbk),
            "big5" => Charset::DoubleByte(DoubleByte::Big5),
            "sjis" | "cp932" => Charset::DoubleByte(DoubleByte::Sjis),
            "euckr" => Charset::DoubleByte(DoubleByte::Euckr),
            "armscii8" | "ascii" | "binary" | "cp1250" | "cp1251" | "cp1256" | "cp1257"
            | "cp850" | "cp852" | "cp866" | "dec8" | "eucjpms" | "gb2312" | "geostd8" | "greek"
            | "hebrew" | "hp8" | "keybcs2" | "koi8r" | "koi8u" | "latin1" | "latin2" | "latin5"
            | "latin7" | "macce" | "macroman" | "tis620" | "ujis" => Charset::HighBytes,
            _ => return None,
        })
    }
}

/// The character set of a collation id a client sends in its handshake (MariaDB's ids below
/// 256); `None` for an id MariaDB does not have (MySQL 8's 255 = `utf8mb4_0900_ai_ci`, …).
pub fn charset_of_collation(id: u8) -> Option<&'static str> {
    Some(match id {
        1 | 84 => "big5",
        2 | 9 | 21 | 27 | 77 => "latin2",
        3 | 69 => "dec8",
        4 | 80 => "cp850",
        5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 => "latin1",
        6 | 72 => "hp8",
        7 | 74 => "koi8r",
        10 | 82 => "swe7",
        11 | 65 => "ascii",
        12 | 91 => "ujis",
        13 | 88 => "sjis",
        14 | 23 | 50 | 51 | 52 => "cp1251",
        16 | 71 => "hebrew",
        18 | 89 => "tis620",
        19 | 85 => "euckr",
        20 | 41 | 42 | 79 => "latin7",
        22 | 75 => "koi8u",
        24 | 86 => "gb2312",
        25 | 70 => "greek",
        26 | 34 | 44 | 66 | 99 => "cp1250",
        28 | 87 => "gbk",
        29 | 58 | 59 => "cp1257",
        30 | 78 => "latin5",
        32 | 64 => "armscii8",
        33 | 83 | 192..=215 | 223 => "utf8mb3",
        35 | 90 | 128..=151 | 159 => "ucs2",
        36 | 68 => "cp866",
        37 | 73 => "keybcs2",
        38 | 43 => "macce",
        39 | 53 => "macroman",
        40 | 81 => "cp852",
        45 | 46 | 224..=247 => "utf8mb4",
        54 | 55 | 101..=124 => "utf16",
        56 | 62 => "utf16le",
        57 | 67 => "cp1256",
        60 | 61 | 160..=183 => "utf32",
        63 => "binary",
        92 | 93 => "geostd8",
        95 | 96 => "cp932",
        97 | 98 => "eucjpms",
        _ => return None,
    })
}

/// The first stand-in character; byte `b` stands as `STAND_IN + b`.
const STAND_IN: u32 = 0xf700;

/// The stand-in of each byte, built at compile time (each is a valid `char`).
const STAND_INS: [char; 256] = {
    let mut table = ['\0'; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match char::from_u32(STAND_IN + b as u32) {
            Some(c) => c,
            None => panic!("stand-ins are in the Private Use Area"),
        };
        b += 1;
    }
    table
};

/// A stand-in's UTF-8 encoding is `EF 9C..=9F xx`.
fn is_stand_in_at(bytes: &[u8], i: usize) -> bool {
    bytes[i] == 0xef && matches!(bytes.get(i + 1), Some(0x9c..=0x9f))
}

/// The statement text for `bytes` sent in `charset`: borrowed when every byte is read as
/// UTF-8 (always for ASCII), otherwise with stand-ins. UTF-8 text that itself holds
/// characters of the stand-in range has them as stand-ins of their bytes, so [`encode`]
/// gives the client's bytes back in every case.
pub fn decode(bytes: &[u8], charset: Charset) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let plain = match charset {
            Charset::Utf8 => !(0..bytes.len()).any(|i| is_stand_in_at(bytes, i)),
            Charset::HighBytes | Charset::DoubleByte(_) => text.is_ascii(),
        };
        if plain {
            return Cow::Borrowed(text);
        }
    }
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
    match charset {
        Charset::Utf8 => {
            for chunk in bytes.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if (STAND_IN..STAND_IN + 256).contains(&u32::from(c)) {
                        let mut buf = [0; 4];
                        out.extend(c.encode_utf8(&mut buf).bytes().map(stand_in));
                    } else {
                        out.push(c);
                    }
                }
                out.extend(chunk.invalid().iter().copied().map(stand_in));
            }
        }
        Charset::HighBytes => out.extend(bytes.iter().map(|&b| {
            if b.is_ascii() {
                char::from(b)
            } else {
                stand_in(b)
            }
        })),
        Charset::DoubleByte(set) => {
            let mut i = 0;
            while i < bytes.len() {
                let b = bytes[i];
                if b.is_ascii() {
                    out.push(char::from(b));
                    i += 1;
                } else if set.lead(b) && bytes.get(i + 1).is_some_and(|&t| set.trail(t)) {
                    out.push(stand_in(b));
                    out.push(stand_in(bytes[i + 1]));
                    i += 2;
                } else {
                    out.push(stand_in(b));
                    i += 1;
                }
            }
        }
    }
    Cow::Owned(out)
}

fn stand_in(b: u8) -> char {
    STAND_INS[usize::from(b)]
}

/// The bytes to send for statement text made by [`decode`] (and rewritten): stand-ins become
/// the bytes they stand for. Borrowed when the text holds none.
pub fn encode(text: &str) -> Cow<'_, [u8]> {
    let bytes = text.as_bytes();
    let Some(first) = (0..bytes.len()).find(|&i| is_stand_in_at(bytes, i)) else {
        return Cow::Borrowed(bytes);
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    let mut i = first;
    while i < bytes.len() {
        if is_stand_in_at(bytes, i) && i + 2 < bytes.len() {
            out.push(((bytes[i + 1] - 0x9c) << 6) | (bytes[i + 2] & 0x3f));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ascii_and_utf8_text_is_borrowed_both_ways() {
        for charset in [
            Charset::Utf8,
            Charset::HighBytes,
            Charset::named("gbk").unwrap(),
        ] {
            assert!(matches!(decode(b"SELECT 1", charset), Cow::Borrowed(_)));
        }
        let text = "INSERT INTO t VALUES ('café')";
        assert!(matches!(
            decode(text.as_bytes(), Charset::Utf8),
            Cow::Borrowed(_)
        ));
        assert!(matches!(encode(text), Cow::Borrowed(_)));
    }

    #[test]
    fn a_gbk_trail_backslash_is_no_escape() {
        let gbk = Charset::named("GBK").unwrap();
        let sql = b"SELECT '\xd5\x5c', 1";
        let text = decode(sql, gbk);
        assert!(!text.contains('\\'), "{text:?}");
        assert_eq!(text.matches('\'').count(), 2);
        assert_eq!(encode(&text).as_ref(), sql);
        // 0xff leads no character: the backslash after it escapes.
        assert!(decode(b"'\xff\\'", gbk).contains('\\'));
    }

    #[test]
    fn latin1_high_bytes_and_invalid_utf8_stand_in() {
        let text = decode(b"'caf\xe9'", Charset::HighBytes);
        assert_eq!(text.chars().nth(4), Some('\u{f7e9}'));
        assert_eq!(encode(&text).as_ref(), b"'caf\xe9'");
        let text = decode(b"_binary'\xff\x00\xc3\xa9'", Charset::Utf8);
        assert_eq!(text, "_binary'\u{f7ff}\0é'");
    }

    #[test]
    fn unsafe_character_sets_are_not_lexed() {
        for name in ["swe7", "ucs2", "utf16", "utf32", "gb18030", "nonsense"] {
            assert_eq!(Charset::named(name), None, "{name}");
        }
        assert_eq!(charset_of_collation(28), Some("gbk"));
        assert_eq!(charset_of_collation(255), None);
    }

    proptest! {
        #[test]
        fn encode_gives_back_what_decode_read(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            set in 0..6usize,
        ) {
            let charset = [
                Charset::Utf8,
                Charset::HighBytes,
                Charset::DoubleByte(DoubleByte::Gbk),
                Charset::DoubleByte(DoubleByte::Big5),
                Charset::DoubleByte(DoubleByte::Sjis),
                Charset::DoubleByte(DoubleByte::Euckr),
            ][set];
            let text = decode(&bytes, charset);
            let back = encode(&text);
            prop_assert_eq!(back.as_ref(), bytes.as_slice());
        }

        #[test]
        fn utf8_stand_in_characters_round_trip(c in 0xf6f0u32..0xf810) {
            let Some(c) = char::from_u32(c) else { return Ok(()) };
            let sql = format!("'{c}\u{ff}'");
            let mut bytes = sql.into_bytes();
            bytes.push(0xff);
            let text = decode(&bytes, Charset::Utf8);
            let back = encode(&text);
            prop_assert_eq!(back.as_ref(), bytes.as_slice());
        }
    }
}
