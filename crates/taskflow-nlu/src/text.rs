//! The utterance being read: the original text and a working copy (ASCII-lowercased, same
//! byte offsets). Every phrase that is understood is blanked out of both, so what remains at
//! the end is the title.

use regex::{Captures, Regex};

#[derive(Debug, Clone)]
pub struct Text {
    original: String,
    work: String,
    /// What is being read now: each blanked phrase is recorded under it.
    reading: &'static str,
    /// The phrases taken, in order, each with what it was read as.
    taken: Vec<(String, &'static str)>,
}

impl Text {
    pub fn new(s: &str) -> Self {
        // Typographic quotes and dashes read as their plain forms; tabs and line breaks as spaces.
        let cleaned: String = s
            .chars()
            .map(|c| match c {
                '\u{2018}' | '\u{2019}' => '\'',
                '\u{2013}' | '\u{2014}' => '-',
                c if c.is_whitespace() => ' ',
                c if c.is_control() => ' ',
                c => c,
            })
            .collect();
        let work = cleaned.to_ascii_lowercase();
        Self {
            original: cleaned,
            work,
            reading: "command",
            taken: Vec::new(),
        }
    }

    /// Phrases taken from now on are read as `field` ("due", "priority", …).
    pub fn reading(&mut self, field: &'static str) {
        self.reading = field;
    }

    /// The phrases taken and what each was read as.
    pub fn into_taken(self) -> Vec<(String, &'static str)> {
        self.taken
    }

    /// The working copy: lowercase ASCII letters, blanks where phrases were taken.
    pub fn work(&self) -> &str {
        &self.work
    }

    pub fn original(&self) -> &str {
        &self.original
    }

    /// Blanks `start..end` out of both copies.
    pub fn blank(&mut self, start: usize, end: usize) {
        let (start, end) = (self.floor(start), self.floor(end));
        let phrase = self.original[start..end].trim();
        if !phrase.is_empty() {
            self.taken.push((phrase.to_owned(), self.reading));
        }
        let spaces = " ".repeat(end - start);
        self.work.replace_range(start..end, &spaces);
        self.original.replace_range(start..end, &spaces);
    }

    fn floor(&self, mut i: usize) -> usize {
        i = i.min(self.work.len());
        while !self.work.is_char_boundary(i) {
            i -= 1;
        }
        i
    }

    /// The first match of `re` whose handler accepts it (returns `Some`); its span (or the
    /// span of group `keep`, when the handler says so) is blanked.
    pub fn take<T>(
        &mut self,
        re: &Regex,
        mut f: impl FnMut(&Captures<'_>) -> Option<T>,
    ) -> Option<T> {
        let work = self.work.clone();
        for caps in re.captures_iter(&work) {
            if let Some(v) = f(&caps) {
                let m = caps.get(0)?;
                self.blank(m.start(), m.end());
                return Some(v);
            }
        }
        None
    }

    /// Like [`Text::take`], for every accepting match.
    pub fn take_all<T>(
        &mut self,
        re: &Regex,
        mut f: impl FnMut(&Captures<'_>) -> Option<T>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(v) = self.take(re, &mut f) {
            out.push(v);
        }
        out
    }

    /// What is left of the original, with runs of blanks collapsed.
    pub fn rest(&self) -> String {
        self.original
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A number said as digits or as a word ("a", "an", "one" … "twelve", "a couple of").
pub fn number(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    Some(match s {
        "a" | "an" | "one" | "a single" => 1,
        "two" | "a couple of" | "a couple" | "couple of" => 2,
        "three" | "a few" | "few" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "fifteen" => 15,
        "twenty" => 20,
        "thirty" => 30,
        "forty five" | "forty-five" => 45,
        _ => return None,
    })
}

/// The regex alternation of [`number`]'s words and digits.
pub const NUMBER: &str = r"\d+|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty[ -]five|a couple of|a few";
