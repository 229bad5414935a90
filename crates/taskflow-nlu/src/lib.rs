//! How taskflow reads what people say. Pure: an utterance, the user's local "now" and
//! timezone in; the intent and its slots out ([`Parsed`]), in the shape of
//! `nlu-corpus.md`. No I/O, no state; every phrase that is understood is taken out of the
//! text, and what is left is the task's title.

mod recur;
mod text;
mod when;

use std::sync::LazyLock;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone as _};
use chrono_tz::Tz;
use regex::Regex;
use serde::Serialize;

use crate::{
    recur::Repeat,
    text::{NUMBER, Text, number},
    when::When,
};

/// The longest utterance read; the rest is ignored (a chat message is far shorter).
pub const MAX_LEN: usize = 2000;

/// What the utterance asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    AddTask,
    ListTasks,
    CompleteTask,
    ReopenTask,
    DeleteTask,
    UpdateTask,
    Help,
    Unknown,
}

/// A task to add: only what was said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NewTask {
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrence_anchor: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reminders_before_minutes: Vec<u32>,
}

/// Which task a command means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Number(i64),
    Query(String),
    Last(bool),
}

/// A change to a task: only what was said. `recurrence: Some(None)` stops repeating.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrence_anchor: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reminders_before_minutes: Vec<u32>,
    /// A time said without a day ("change it to 3pm"). `due_at` holds it on the day the
    /// corpus convention gives (today if still ahead, else tomorrow); a task that already has
    /// a day keeps it, which only the caller, who knows the task, can do.
    #[serde(skip)]
    pub time_only: Option<NaiveTime>,
}

/// A due range of a list, both days inclusive, in the user's timezone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DueRange {
    pub from: String,
    pub to: String,
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Filter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// One level, or several as a comma list, most urgent first ("urgent,high"): the levels
    /// said, each exactly ("high priority" is high alone, as the API's `priority=high` is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<DueRange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue: Option<bool>,
    /// When the tasks were completed ("what did I finish yesterday?"), both days inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed: Option<DueRange>,
    /// "the next 5 things due": at most this many, soonest due first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// How an utterance was understood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parsed {
    pub intent: Intent,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<NewTask>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "target_json"
    )]
    pub target: Option<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// More tasks to add, said as a list with the first ("add eggs, bread and butter to
    /// groceries"): each has the first's fields and its own title.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<NewTask>,
}

fn target_json<S: serde::Serializer>(t: &Option<Target>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut m = s.serialize_map(Some(1))?;
    match t {
        Some(Target::Number(n)) => m.serialize_entry("number", n)?,
        Some(Target::Query(q)) => m.serialize_entry("query", q)?,
        Some(Target::Last(_)) | None => m.serialize_entry("last", &true)?,
    }
    m.end()
}

impl Parsed {
    fn only(intent: Intent) -> Self {
        Self {
            intent,
            task: None,
            target: None,
            changes: None,
            filter: None,
            also: Vec::new(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

fn re(s: &str) -> Regex {
    Regex::new(s).unwrap_or_else(|e| panic!("bad pattern {s}: {e}"))
}

macro_rules! pattern {
    ($name:ident, $src:expr) => {
        static $name: LazyLock<Regex> = LazyLock::new(|| re(&$src));
    };
}

pattern!(
    FILLER,
    r"^(?:(?:hey|hi|ok|okay|so|um|uh|oh|yo)\b[,!.]? ?)*(?:(?:please|pls|plz|kindly|could you|can you|would you|will you|could u|can u|i want you to|i'd like you to|i would like you to|go ahead and|just)\b,? ?)*"
);
pattern!(
    TRAILING_FILLER,
    r"(?:,? (?:please|pls|plz|thanks|thank you|thx|for me|asap please))+[.!?]*$"
);
pattern!(
    HELP,
    r"^(?:help|help me|\?|what can you do|what do you do|how does this work|how do i use (?:this|you|it)|what are (?:the|your) commands|commands|show (?:me )?(?:the )?commands|what can i (?:say|do|ask)|how can you help(?: me)?|usage|instructions)\b[ ?.!]*$"
);
pattern!(
    GREETING,
    r"^(?:hi|hello|hey|hi there|hello there|hey there|good (?:morning|afternoon|evening)|thanks|thank you|thanks a lot|thank you very much|thx|cheers)[ !.]*$"
);
pattern!(
    REOPEN,
    r"^(?:reopen|re-open|undo|uncomplete|un-complete|unmark|untick|un-tick|uncheck|un-check|restore|bring back)\b|\b(?:as |to )?(?:not done|not complete|not completed|incomplete|undone|unfinished|pending|open again|not finished)\b"
);
pattern!(
    COMPLETE,
    r"^(?:complete|finish|finished|close|check off|tick off|cross off|i (?:have )?(?:finished|completed|did|done)|i'm done with|im done with|i am done with|done with|done|did)\b|\b(?:as |to )?(?:done|complete|completed|finished|checked off)\b[ .!]*$"
);
pattern!(
    DELETE,
    r"^(?:delete|remove|erase|trash|cancel|drop|get rid of|forget about|forget|scrap|discard)\b"
);
pattern!(CLEAR, r"^clear\b");
pattern!(
    CLEAR_DONE,
    r"^clear (?:all|everything|(?:all (?:the )?|the )?(?:completed|done|finished) (?:tasks|todos|ones|items))\b"
);
pattern!(
    UPDATE,
    r"^(?:rename|change|move|push|postpone|reschedule|defer|delay|make|set|update|edit|modify|stop repeating|stop recurring|don't repeat|do not repeat|tag|untag|add (?:the )?tags?|remove (?:the )?tags?|remind me about|remind me of|bump|prioriti[sz]e|mark)\b"
);
pattern!(
    LIST,
    r"^(?:show|list|display|view|see|get|give me|what's|whats|what is|what are|what do i have|what have i|what did i|what else|which|any|do i have|how many|tell me|search|find|look for|lookup|look up|my (?:tasks|todos|to-dos|list)|tasks|todos|to-dos|agenda|anything|something|(?:the )?next (?:\d{1,3}|two|three|four|five|six|seven|eight|nine|ten|few) (?:things|tasks|todos|to-dos|items))\b"
);
pattern!(
    ADD,
    r"^(?:add|create|new|make a (?:new )?task|make a todo|put|note|jot down|schedule|set up|set a reminder to|set a reminder|remind me to|remind me|i need to|i have to|i've got to|ive got to|i gotta|i must|i should|need to|have to|don't forget to|dont forget to|do not forget to|don't let me forget to|todo|to-do|task|add a task|add task|add a todo|add todo|add to my list|new task|new todo)\b:? ?"
);
pattern!(
    ADD_LEAD,
    r"^(?:a |an )?(?:new )?(?:task|todo|to-do|reminder|item)s?(?: to| for| called| named| titled|:)? "
);
pattern!(
    QUESTION,
    r"^(?:what|what's|whats|how|why|who|when|where|is|are|will|would|should|can|could|do|does|did|tell me)\b"
);

pattern!(
    LIST_WEAK,
    r"^(?:what's|whats|what is|what are|what else|which|any|anything|something|do i have|how many|tell me|give me|get|see)\b"
);
pattern!(
    TASKISH,
    r"\b(?:tasks?|todos?|to-dos?|due|overdue|late|have|planned|scheduled|list|agenda|completed|done|finish|finished|left|pending|open|remaining|priority|urgent|important|tagged|today|tonight|tomorrow|week|weekend|month|on my plate|up next|next|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b|#\w"
);
pattern!(TAG_HASH, r"(?:^|\s)#([\p{L}\p{N}_-]{1,50})\b");
pattern!(
    TAGGED,
    r"\b(?:tagged(?: with| as)?|tag it(?: with| as)?|with (?:the )?tags?|under|in (?:the )?(?:list|category|project)) ([a-z0-9_-]{1,50})(?:(?:,| and|,? &) ([a-z0-9_-]{1,50}))*\b"
);
pattern!(
    REMINDER_FOR,
    r"^(?:set|add|create|put|schedule)(?: up)? (?:a |an )?reminder (?:for|on|to|about|of)\b"
);
pattern!(
    REMINDER_REF,
    r"^(?:remind me (?:about|of)|(?:set|add|create|put|schedule)(?: up)? (?:a |an )?reminder (?:for|on|to|about|of)) (?:#\d{1,9}|(?:task|todo|item|number|no\.?) ?#?\d{1,9}|it|that|this one|that one|the last one)\b"
);
pattern!(
    TAGGED_LEAD,
    r"^(?:tagged(?: with| as)?|tag it(?: with| as)?|with (?:the )?tags?|under|in (?:the )?(?:list|category|project))\s+"
);
pattern!(
    PRIORITY_P,
    r"\b(?:priority )?p([1-4])\b|\b(?:priority|prio) ([1-4])\b"
);
pattern!(
    PRIORITY_WORD,
    r"\b(?:with |at |as |a |an )?(?:(?:very|super|really|top) )?(urgent|high|medium|normal|low|top|highest|lowest)(?:[- ]priority|[- ]prio)\b|\b(?:with |at )?priority(?: of| to| is|:)? (urgent|high|medium|normal|low)\b|\b(?:it'?s |this is |is |as |mark (?:it |this )?(?:as )?)?(urgent|asap|important|critical)(?:ly)?\b|\b(?:not important|not urgent|whenever|someday|no rush)\b"
);
pattern!(
    REMIND_BEFORE,
    format!(
        r"\b(?:and |with a |with |set a |add a )?(?:remind(?:er|ing)?(?: me)?(?: about it| of it| it)?|notify me|alert me|ping me)? ?({NUMBER}|half an?) (minutes?|mins?|hours?|hrs?|days?|weeks?) (?:before|ahead|in advance|earlier|prior)(?: it'?s due| the deadline| due| it| hand)?\b"
    )
);
pattern!(
    REMIND_AT_TIME,
    r"\b(?:and |with a |with )?(?:remind(?:er)?(?: me)?|notify me|alert me|ping me)(?: about it| of it)?(?: on time| at (?:the )?(?:due )?time| when (?:it'?s )?due)\b"
);
pattern!(
    REMIND_ME_TO,
    r"^(?:please )?(?:remind me to|remind me that i (?:need|have) to|set a reminder to|reminder to|remind me about|remind me of)\b ?"
);

pattern!(
    NUMBER_REF,
    r"(?:^|\s)(?:task|todo|item|number|no\.?|nr\.?)? ?#?(\d{1,9})\b|(?:^|\s)#(\d{1,9})\b"
);
pattern!(
    IT_REF,
    r"\b(it|that|this|that one|this one|the last one|the previous one|the one i just added)\b"
);

// Quick-add marks, as typed in other todo apps: `!high` (or `!urgent`, `!medium`, `!low`),
// `!!` medium, `!!!` high, `!!!!` urgent (as Apple's Reminders reads them), `*tag` and `@tag`
// labels, and `@` before a date (`@tomorrow`, `@friday`, `@5pm`), which is read as the date.
pattern!(BANG_LEVEL, r"(?:^|\s)!(urgent|high|medium|normal|low)\b");
pattern!(BANGS, r"(?:^|\s)(!{2,4})(?:\s|$|[.,;])");
pattern!(TAG_MARK, r"(?:^|\s)[*@]([\p{L}\p{N}_-]{1,50})\b");
pattern!(
    AT_WHEN,
    r"(?:^|\s)(@)(?:today|tonight|tomorrow|tmrw|next|this|in|on|noon|midnight|morning|afternoon|evening|every|\d|mon|tue|wed|thu|fri|sat|sun|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
);

// Questions about what there is to do: a list, with the filter the question implies.
pattern!(
    TODO_QUESTION,
    r"^(?:is there|are there|is anything|are any|got|have i got|do i have|does anything|anything|something|what(?:'s| is)? (?:left|next|up next|pending|outstanding|remaining|on my plate|on deck|coming up)|what (?:should|do|must|can) i (?:do|work on|tackle|finish|start)|what (?:do|have) i (?:got|have|need)|what am i (?:doing|missing)|what else)\b"
);

// Statements of fact: "the report is finished", "I already paid the electricity bill" (done),
// "the dentist moved to thursday at 3" (a new time).
pattern!(
    PAST_DONE,
    r"^i(?: have|'ve| ve)?(?: already| just| finally| now)* (paid|called|phoned|rang|bought|sent|emailed|mailed|posted|booked|cleaned|fixed|submitted|renewed|picked up|took|wrote|read|watched|returned|cancelled|canceled|filed|ordered|washed|walked|fed|watered|packed|printed|signed|replied to|answered|texted|visited|handed in|turned in|dropped off|collected|sorted|tidied|vacuumed|mowed|charged|backed up|updated|reviewed|shipped|deployed|made|cooked|baked|prepared|practiced|practised|studied)\b ?"
);
pattern!(
    IS_DONE,
    r"\b(?:is|are|was|were|has been|have been|got|'s) (?:all |now |already |finally )*(?:done|complete|completed|finished|sorted|sorted out|taken care of|handled|paid|sent|booked|submitted|over)[ .!]*$"
);
pattern!(
    MOVED,
    r"\b(?:(?:has|have|was|were|is|are|got|just|been) )*(?:moved|pushed(?: back)?|postponed|rescheduled|delayed|shifted|brought forward|pulled forward)(?: to| until| till| for)?\b|\b(?:is|are|was) now\b"
);

/// Words that are not a request: a greeting or thanks. `parse` reads them as `unknown`
/// (the contract of the corpus); the assistant answers them in kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmallTalk {
    Greeting,
    Thanks,
}

/// Whether `input` is only a greeting or thanks.
pub fn small_talk(input: &str) -> Option<SmallTalk> {
    let raw = input.trim().to_lowercase();
    let mut text = Text::new(&raw);
    strip(&mut text, &FILLER);
    let lead = text.work().trim();
    if !GREETING.is_match(&raw) && (lead.is_empty() || !GREETING.is_match(lead)) {
        return None;
    }
    Some(
        if ["thank", "thx", "cheers"].iter().any(|w| raw.contains(w)) {
            SmallTalk::Thanks
        } else {
            SmallTalk::Greeting
        },
    )
}

/// Reads `input` said at local wall-clock time `now` in `tz`.
pub fn parse(input: &str, now: NaiveDateTime, tz: Tz) -> Parsed {
    read(input, now, tz).0
}

/// A phrase of an utterance and the field it was read as: `due`, `priority`, `tags`,
/// `recurrence`, `reminders`, `filter`, `target`, `command` (the words that say what to do),
/// `mark` (quick-add marks' `@`), `title`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reading {
    pub words: String,
    #[serde(rename = "as")]
    pub field: &'static str,
}

/// [`parse`], and which words became which field (`taskflow nlu parse --explain`).
pub fn explain(input: &str, now: NaiveDateTime, tz: Tz) -> (Parsed, Vec<Reading>) {
    let (parsed, taken) = read(input, now, tz);
    let mut readings: Vec<Reading> = taken
        .into_iter()
        .map(|(words, field)| Reading { words, field })
        .collect();
    let mut said = |words: &str, field| {
        if !words.is_empty() {
            readings.push(Reading {
                words: words.to_owned(),
                field,
            });
        }
    };
    if let Some(t) = &parsed.task {
        said(&t.title, "title");
    }
    for t in &parsed.also {
        said(&t.title, "title");
    }
    if let Some(c) = parsed.changes.as_ref().and_then(|c| c.title.as_deref()) {
        said(c, "title");
    }
    match &parsed.target {
        Some(Target::Query(q)) => said(q, "target"),
        Some(Target::Number(n)) if !readings.iter().any(|r| r.field == "target") => {
            readings.push(Reading {
                words: format!("#{n}"),
                field: "target",
            });
        }
        _ => {}
    }
    (parsed, readings)
}

fn read(input: &str, now: NaiveDateTime, tz: Tz) -> (Parsed, Vec<(String, &'static str)>) {
    let mut end = input.len().min(MAX_LEN);
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    let trimmed = input[..end].trim();
    // Quoted text is taken literally as a title and read no further.
    let (unquoted, quoted) = split_quotes(trimmed);
    let unquoted = with_command_spelled(unquoted);
    let mut text = Text::new(&unquoted);
    let parsed = understand(&mut text, quoted, now, tz);
    (parsed, text.into_taken())
}

fn understand(text: &mut Text, quoted: Option<String>, now: NaiveDateTime, tz: Tz) -> Parsed {
    text.reading("mark");
    let at_dates: Vec<_> = AT_WHEN
        .captures_iter(text.work())
        .filter_map(|c| c.get(1).map(|m| m.range()))
        .collect();
    for at in at_dates {
        text.blank(at.start, at.end);
    }
    text.reading("command");
    strip(text, &FILLER);
    strip(text, &TRAILING_FILLER);
    let lead = text
        .work()
        .trim()
        .trim_end_matches(['.', '!', '?'])
        .trim()
        .to_owned();
    if lead.is_empty() && quoted.is_none() {
        return Parsed::only(Intent::Unknown);
    }
    if HELP.is_match(&lead) {
        return Parsed::only(Intent::Help);
    }
    if GREETING.is_match(&lead) {
        return Parsed::only(Intent::Unknown);
    }
    let ctx = Ctx { now, tz, quoted };
    if let Some(p) = command(text, &lead, &ctx) {
        return p;
    }
    add(text, &ctx, false, false)
}

struct Ctx {
    now: NaiveDateTime,
    tz: Tz,
    quoted: Option<String>,
}

/// The command words that a slip of one letter is read as ("lsit my tasks", "dleete #3",
/// "compelte task 2", "reshcedule the dentist"): two neighbouring letters swapped in a word of
/// four letters or more, or one letter missing, extra or wrong in a word of six or more.
const COMMANDS: [&str; 24] = [
    "show",
    "list",
    "find",
    "move",
    "mark",
    "help",
    "tasks",
    "delete",
    "remove",
    "complete",
    "finish",
    "reopen",
    "rename",
    "remind",
    "search",
    "postpone",
    "reschedule",
    "cancel",
    "create",
    "change",
    "update",
    "display",
    "untick",
    "uncheck",
];

/// Words one letter away from a command that are words of their own.
const NOT_SLIPS: [&str; 10] = [
    "rewind", "crate", "chance", "remote", "finnish", "remand", "relist", "mask", "mork", "finds",
];

/// `s` with its first word (after a greeting or "please") spelled as the command it was
/// meant to be, when it is a slip of one letter of one; otherwise unchanged.
fn with_command_spelled(s: String) -> String {
    let lower = s.to_ascii_lowercase();
    let skip = FILLER.find(&lower).map_or(0, |m| m.end());
    let rest = &lower[skip..];
    let len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
    let word = &rest[..len];
    if len < 4 || COMMANDS.contains(&word) || NOT_SLIPS.contains(&word) {
        return s;
    }
    let Some(command) = COMMANDS.iter().find(|c| slip_of(word, c)) else {
        return s;
    };
    format!("{}{command}{}", &s[..skip], &s[skip + len..])
}

/// Whether `word` is `command` with two neighbouring letters swapped, or (for commands of six
/// letters or more) with one letter missing, extra or replaced.
fn slip_of(word: &str, command: &str) -> bool {
    let (w, c) = (word.as_bytes(), command.as_bytes());
    if w.len() == c.len() {
        let diff: Vec<usize> = (0..w.len()).filter(|&i| w[i] != c[i]).collect();
        return match diff.as_slice() {
            [i, j] => *j == i + 1 && w[*i] == c[*j] && w[*j] == c[*i],
            [_] => c.len() >= 6,
            _ => false,
        };
    }
    if c.len() < 6 || w.len().abs_diff(c.len()) != 1 {
        return false;
    }
    let (long, short) = if w.len() > c.len() { (w, c) } else { (c, w) };
    (0..long.len()).any(|skip| {
        long.iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, b)| b)
            .eq(short.iter())
    })
}

/// Quoted segments ("…", “…”, '…' around words) out of the text: the first is the title.
fn split_quotes(s: &str) -> (String, Option<String>) {
    static Q: LazyLock<Regex> =
        LazyLock::new(|| re(r#""([^"]+)"|“([^”]+)”|(?:^|\s)'([^']+)'(?:\s|$|[.,!?])"#));
    let Some(c) = Q.captures(s) else {
        return (s.to_owned(), None);
    };
    let Some(m) = c.get(0) else {
        return (s.to_owned(), None);
    };
    let inner = c
        .get(1)
        .or(c.get(2))
        .or(c.get(3))
        .map(|m| m.as_str().trim().to_owned());
    let mut rest = String::with_capacity(s.len());
    rest.push_str(&s[..m.start()]);
    rest.push(' ');
    rest.push_str(&s[m.end()..]);
    (rest, inner.filter(|q| !q.is_empty()))
}

fn strip(text: &mut Text, re: &Regex) {
    let work = text.work().to_owned();
    let start = work.len() - work.trim_start().len();
    if let Some(m) = re.find(&work[start..])
        && !m.is_empty()
    {
        text.blank(start + m.start(), start + m.end());
    }
}

fn command(text: &mut Text, lead: &str, ctx: &Ctx) -> Option<Parsed> {
    // "remind me about task 4 15 minutes before" and "set a reminder for it an hour before"
    // change a task; so does "remind me about the passport a day before", and "remind me 15
    // minutes before the standup": a reminder relative to a due date that was not said
    // belongs to a task that exists.
    let about = REMINDER_FOR.is_match(lead)
        || lead.starts_with("remind me about")
        || lead.starts_with("remind me of");
    if about && REMINDER_REF.is_match(lead) {
        return Some(update(text, lead, ctx));
    }
    if about
        || (lead.starts_with("remind me ")
            && !REMIND_ME_TO.is_match(lead)
            && REMIND_BEFORE.is_match(lead))
    {
        let mut named = text.clone();
        let p = update(&mut named, lead, ctx);
        if only_reminders(&p) {
            *text = named;
            return Some(p);
        }
    }
    if REMIND_ME_TO.is_match(lead) {
        strip(text, &REMIND_ME_TO);
        return Some(add(text, ctx, true, true));
    }
    // "I already paid the electricity bill": done, named by what is left after the verb.
    if let Some(m) = PAST_DONE.find(lead)
        && !ADD.is_match(lead)
    {
        let off = text.work().len() - text.work().trim_start().len();
        text.blank(off + m.start(), off + m.end());
        return Some(targeted(text, Intent::CompleteTask, &COMPLETE));
    }
    // "the report is finished", "#4 is done".
    if IS_DONE.is_match(lead) && !QUESTION.is_match(lead) && !LIST.is_match(lead) {
        let _ = text.take(&IS_DONE, |_| Some(()));
        return Some(targeted(text, Intent::CompleteTask, &COMPLETE));
    }
    if REOPEN.is_match(lead)
        && !lead.starts_with("add")
        && !lead.starts_with("list")
        && !lead.starts_with("show")
    {
        return Some(targeted(text, Intent::ReopenTask, &REOPEN));
    }
    if COMPLETE.is_match(lead) && !ADD.is_match(lead) && !LIST.is_match(lead) {
        return Some(targeted(text, Intent::CompleteTask, &COMPLETE));
    }
    // "clear completed tasks" deletes (after a yes); "clear out the garage" is a chore.
    if CLEAR_DONE.is_match(lead) {
        return Some(targeted(text, Intent::DeleteTask, &CLEAR));
    }
    if DELETE.is_match(lead) {
        if lead.starts_with("remove") && (lead.contains(" tag") || lead.contains("from ")) {
            return Some(update(text, lead, ctx));
        }
        return Some(targeted(text, Intent::DeleteTask, &DELETE));
    }
    if UPDATE.is_match(lead)
        && !lead.starts_with("make a")
        && !lead.starts_with("set a reminder")
        && !lead.starts_with("set up")
    {
        return Some(update(text, lead, ctx));
    }
    // "the dentist moved to thursday at 3", "my haircut is postponed until friday".
    if !QUESTION.is_match(lead)
        && !ADD.is_match(lead)
        && let Some(m) = MOVED.find(lead)
        && m.start() > 0
    {
        let mut rest = text.clone();
        let off = rest.work().len() - rest.work().trim_start().len();
        rest.blank(off + m.start(), off + m.end());
        let p = update(&mut rest, lead, ctx);
        if p.changes.as_ref().is_some_and(changes_when) {
            *text = rest;
            return Some(p);
        }
    }
    if LIST.is_match(lead)
        && !ADD.is_match(lead)
        && (!LIST_WEAK.is_match(lead) || TASKISH.is_match(lead))
    {
        return Some(list(text, lead, ctx));
    }
    if ADD.is_match(lead) || ctx.quoted.is_some() {
        // "set a reminder for tomorrow at 9am to call mom" reminds on time, like "remind me to".
        let reminder = lead.starts_with("set a reminder") || REMINDER_FOR.is_match(lead);
        strip(text, &ADD);
        strip(text, &ADD_LEAD);
        return Some(add(text, ctx, reminder, true));
    }
    // "is there anything I have to do on friday?", "got anything overdue?", "what's next?"
    if TODO_QUESTION.is_match(lead) {
        return Some(list(text, lead, ctx));
    }
    if QUESTION.is_match(lead) {
        return Some(Parsed::only(Intent::Unknown));
    }
    None
}

/// An update that only adds reminders relative to the due time of a task named by words:
/// "remind me about the passport a day before". Such a reminder belongs to a task that exists.
fn only_reminders(p: &Parsed) -> bool {
    let reminders = p.changes.as_ref().is_some_and(|c| {
        !c.reminders_before_minutes.iter().all(|&m| m == 0)
            && c.due_at.is_none()
            && c.due_date.is_none()
            && c.recurrence.is_none()
    });
    reminders && matches!(&p.target, Some(Target::Query(q)) if !q.is_empty())
}

/// Whether changes say a new day or time.
fn changes_when(c: &Changes) -> bool {
    c.due_at.is_some() || c.due_date.is_some() || c.time_only.is_some()
}

/// The slots of a task to add; `reminder` adds an on-time reminder ("remind me to …").
fn add(text: &mut Text, ctx: &Ctx, reminder: bool, had_command: bool) -> Parsed {
    let mut task = NewTask::default();
    text.reading("recurrence");
    let repeat = recur::take(text, ctx.now);
    text.reading("reminders");
    task.reminders_before_minutes = reminders(text);
    text.reading("tags");
    task.tags = tags(text);
    text.reading("priority");
    task.priority = priority(text);
    text.reading("due");
    let when = when::take(text, ctx.now);
    text.reading("command");
    if reminder && task.reminders_before_minutes.is_empty() {
        task.reminders_before_minutes.push(0);
    }
    let (due_at, due_date) = resolve_due(&when, repeat.as_ref(), ctx);
    task.due_at = due_at;
    task.due_date = due_date;
    if let Some(r) = &repeat {
        task.recurrence = Some(r.rrule());
        if r.completion {
            task.recurrence_anchor = Some("completion");
        }
    }
    let mut also = Vec::new();
    task.title = match &ctx.quoted {
        Some(q) => q.clone(),
        None => {
            let rest = text.rest();
            match items_to_list(&rest) {
                Some((mut items, list)) => {
                    if !task.tags.contains(&list) {
                        task.tags.push(list);
                    }
                    let first = items.remove(0);
                    also = items
                        .into_iter()
                        .map(|title| NewTask {
                            title,
                            ..task.clone()
                        })
                        .collect();
                    first
                }
                None => title(&rest),
            }
        }
    };
    let said_something = repeat.is_some()
        || !when.is_empty()
        || task.priority.is_some()
        || !task.tags.is_empty()
        || !task.reminders_before_minutes.is_empty();
    if task.title.is_empty() || (!had_command && !said_something && ctx.quoted.is_none()) {
        return Parsed::only(Intent::Unknown);
    }
    Parsed {
        task: Some(task),
        also,
        ..Parsed::only(Intent::AddTask)
    }
}

/// "eggs, bread and butter to groceries": the titles of a list of things said with commas,
/// and the list they go to (its tag). `None` without a comma or a list: "buy milk and eggs"
/// is one task.
fn items_to_list(rest: &str) -> Option<(Vec<String>, String)> {
    static TO_LIST: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"(?i)^(.+,.+?)\s+(?:to|on|onto) (?:my |the |our )?([\p{L}\p{N}_-]{1,30})(?: list)?[\s.!]*$",
        )
    });
    let c = TO_LIST.captures(rest)?;
    let list = c[2].to_lowercase();
    if matches!(
        list.as_str(),
        "do" | "it" | "them" | "me" | "you" | "him" | "her"
    ) {
        return None;
    }
    let said = &c[1];
    let mut items: Vec<String> = Vec::new();
    let parts: Vec<&str> = said.split(',').collect();
    for (i, part) in parts.iter().enumerate() {
        let part = part.trim();
        let part = part.strip_prefix("and ").unwrap_or(part);
        // The last two are joined by "and": "bread and butter" of "eggs, bread and butter".
        if i + 1 == parts.len()
            && let Some((a, b)) = part.rsplit_once(" and ")
        {
            items.extend([title(a), title(b)]);
        } else {
            items.push(title(part));
        }
    }
    items.retain(|t| !t.is_empty());
    (items.len() >= 2 && items.iter().all(|t| t.split_whitespace().count() <= 5))
        .then_some((items, list))
}

/// Removes leftovers around a title: connectors, articles at the edges, punctuation.
fn title(rest: &str) -> String {
    static EDGE_START: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"(?i)^(?:(?:to|that|about|for|a task|task|todo|the task|called|named|titled|:|-|,|and|with|i need to|i have to)\s+)+",
        )
    });
    static EDGE_END: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"(?i)(?:\s+(?:on|at|by|due|for|in|from|every|each|and|with|a|an|the|to|starting|until|,|-|:|remind me|reminder|priority|it|please))+$",
        )
    });
    let mut t = rest
        .trim()
        .trim_matches(|c: char| c == ',' || c == ';' || c == ':' || c == '-')
        .trim()
        .to_owned();
    for _ in 0..3 {
        t = EDGE_START.replace(&t, "").trim().to_owned();
        t = EDGE_END.replace(&t, "").trim().to_owned();
        t = t
            .trim_end_matches(['.', '!', '?', ',', ';', ':'])
            .trim()
            .to_owned();
    }
    t
}

fn tags(text: &mut Text) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let original = text.original().to_owned();
    for tag in text.take_all(&TAG_HASH, |c| {
        let m = c.get(1)?;
        // "#12" names task 12.
        if m.as_str().bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(original[m.start()..m.end()].to_lowercase())
    }) {
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    for tag in text.take_all(&TAG_MARK, |c| {
        let m = c.get(1)?;
        Some(original[m.start()..m.end()].to_lowercase())
    }) {
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if let Some(list) = text.take(&TAGGED, |c| {
        let said = TAGGED_LEAD.replace(c.get(0)?.as_str(), "");
        let words = tag_words(&said);
        (!words.is_empty()).then_some(words)
    }) {
        for t in list {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// The tags of a list said as words: "work", "work and home", "work, home & errands".
fn tag_words(said: &str) -> Vec<String> {
    said.split([',', ' ', '&'])
        .filter(|w| !w.is_empty() && *w != "and")
        .map(str::to_owned)
        .collect()
}

fn priority(text: &mut Text) -> Option<&'static str> {
    let level = |s: &str| -> Option<&'static str> {
        Some(match s {
            "1" | "urgent" | "asap" | "critical" | "top" | "highest" => "urgent",
            "2" | "high" | "important" => "high",
            "3" | "medium" | "normal" => "medium",
            "4" | "low" | "lowest" => "low",
            _ => return None,
        })
    };
    if let Some(p) = text.take(&PRIORITY_P, |c| level(c.get(1).or(c.get(2))?.as_str())) {
        return Some(p);
    }
    if let Some(p) = text.take(&BANG_LEVEL, |c| level(&c[1])) {
        return Some(p);
    }
    if let Some(p) = text.take(&BANGS, |c| {
        Some(match c[1].len() {
            2 => "medium",
            3 => "high",
            _ => "urgent",
        })
    }) {
        return Some(p);
    }
    text.take(&PRIORITY_WORD, |c| {
        match c.get(1).or(c.get(2)).or(c.get(3)) {
            Some(m) => level(m.as_str()),
            None => Some("low"),
        }
    })
}

fn reminders(text: &mut Text) -> Vec<u32> {
    let mut out = text.take_all(&REMIND_BEFORE, |c| {
        let n = if c[1].starts_with("half") {
            return Some(30);
        } else {
            number(&c[1])?
        };
        let unit = &c[2];
        Some(match unit.as_bytes().first() {
            Some(b'h') => n * 60,
            Some(b'd') => n * 1440,
            Some(b'w') => n * 10080,
            _ => n,
        })
    });
    if text.take(&REMIND_AT_TIME, |_| Some(())).is_some() {
        out.push(0);
    }
    // "… tomorrow and remind me at 8am": a reminder at that time, which is the due time; the
    // time stays in the text for the date reader.
    static REMIND_AT_CLOCK: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"\b(?:and |then )?(?:remind me|ping me|alert me|notify me|with a reminder|set a reminder)( at \d{1,2}(?::\d{2})? ?(?:am|pm|a\.m\.|p\.m\.)?| at noon| at midnight| in the (?:morning|afternoon|evening))\b",
        )
    });
    let found = REMIND_AT_CLOCK
        .captures(text.work())
        .and_then(|c| Some((c.get(0)?.start(), c.get(1)?.start())));
    if let Some((start, time)) = found {
        text.blank(start, time);
        out.push(0);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The due moment: a date alone is all-day, a time or date with a time is an instant; a
/// recurring task is due at its first occurrence from now on.
fn resolve_due(
    when: &When,
    repeat: Option<&Repeat>,
    ctx: &Ctx,
) -> (Option<String>, Option<String>) {
    let now = ctx.now;
    if let Some(at) = when.at {
        return (Some(rfc3339(at, ctx.tz)), None);
    }
    if let Some(r) = repeat {
        let start_day = r.start.or(when.date).unwrap_or(now.date());
        return match first_occurrence(r, start_day, when.time, ctx) {
            Some(Occurrence::At(t)) => (Some(rfc3339(t, ctx.tz)), None),
            Some(Occurrence::Day(d)) => (None, Some(d.to_string())),
            None => (None, None),
        };
    }
    match (when.date, when.time) {
        (Some(d), Some(t)) => (Some(rfc3339(d.and_time(t), ctx.tz)), None),
        (Some(d), None) => (None, Some(d.to_string())),
        (None, Some(t)) => {
            let today = now.date().and_time(t);
            let at = if today > now {
                today
            } else {
                today + Duration::days(1)
            };
            (Some(rfc3339(at, ctx.tz)), None)
        }
        (None, None) => (None, None),
    }
}

enum Occurrence {
    At(NaiveDateTime),
    Day(NaiveDate),
}

/// The rule's first instance from `start_day` on: with a time, strictly after now; without,
/// today counts.
fn first_occurrence(
    r: &Repeat,
    start_day: NaiveDate,
    time: Option<NaiveTime>,
    ctx: &Ctx,
) -> Option<Occurrence> {
    // The series starts at the first matching instance: "every 2 weeks on friday" said on a
    // Sunday is due this Friday, whatever week the rule would count from.
    let body = Repeat {
        count: None,
        until: None,
        interval: 1,
        ..r.clone()
    }
    .rrule();
    let rule: rrule::RRule<rrule::Unvalidated> = body.parse().ok()?;
    let zone = rrule::Tz::UTC;
    let t = time.unwrap_or(NaiveTime::MIN);
    let dtstart = zone.from_utc_datetime(&start_day.and_time(t));
    let set = rule.build(dtstart).ok()?;
    let threshold = match time {
        Some(_) => ctx.now,
        None => ctx.now.date().and_time(NaiveTime::MIN) - Duration::seconds(1),
    };
    let first = (&set)
        .into_iter()
        .take(2000)
        .map(|d| d.naive_utc())
        .find(|d| *d > threshold)?;
    Some(match time {
        Some(_) => Occurrence::At(first),
        None => Occurrence::Day(first.date()),
    })
}

/// A local wall-clock time as RFC 3339 with the zone's offset on that date; a time that does
/// not exist (DST gap) moves forward to the first that does.
fn rfc3339(local: NaiveDateTime, tz: Tz) -> String {
    let mut probe = local;
    for _ in 0..8 {
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        }
        probe += Duration::minutes(15);
    }
    DateTime::<chrono::Utc>::from_naive_utc_and_offset(local, chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The task a command names: a number, "it", or words of its title.
fn target(text: &mut Text) -> Target {
    text.reading("target");
    if let Some(n) = text.take(&NUMBER_REF, |c| {
        c.get(1).or(c.get(2))?.as_str().parse().ok()
    }) {
        return Target::Number(n);
    }
    let rest = text.rest().to_ascii_lowercase();
    let words: Vec<&str> = rest
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation()))
        .filter(|w| !w.is_empty())
        .collect();
    if words.iter().all(|w| {
        matches!(
            *w,
            "it" | "that"
                | "this"
                | "one"
                | "the"
                | "last"
                | "previous"
                | "as"
                | "i"
                | "just"
                | "added"
                | "task"
                | "todo"
                // "move it to friday and make it urgent": the second verb names it again.
                | "and"
                | "also"
                | "then"
                | "make"
                | "set"
        )
    }) && !words.is_empty()
        || IT_REF.is_match(&rest) && words.len() <= 3
    {
        let _ = text.take(&IT_REF, |_| Some(()));
        return Target::Last(true);
    }
    if words.is_empty() {
        return Target::Last(true);
    }
    Target::Query(query_words(&text.rest()))
}

/// A title query without the words around it ("the dentist task" → "dentist").
fn query_words(s: &str) -> String {
    static EDGES: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"(?i)^(?:(?:the|my|a|an|task|todo|item|one|called|named|titled|about|with|for|as|of|to)\s+)+|(?:\s+(?:task|todo|item|one|as|for|please|now|off|from my list|from the list|on my list|already))+$",
        )
    });
    let mut q = s.trim().trim_end_matches(['.', '!', '?']).trim().to_owned();
    for _ in 0..3 {
        q = EDGES.replace_all(&q, "").trim().to_owned();
    }
    q
}

fn targeted(text: &mut Text, intent: Intent, verb: &Regex) -> Parsed {
    // Take the verb phrase(s) out, then what names the task.
    static MARK: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:mark|set|flag|move|put)\b ?"));
    static TAIL: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"\b(?:as|to) (?:done|complete|completed|finished|not done|not complete|incomplete|undone|pending|open|unfinished)\b|\b(?:done|complete|completed|finished|please|it off|off)[.! ]*$|\b(?:already|now)[.! ]*$",
        )
    });
    strip(text, &MARK);
    let work = text.work().to_owned();
    if let Some(m) = verb.find(work.trim_start()) {
        let off = work.len() - work.trim_start().len();
        text.blank(off + m.start(), off + m.end());
    }
    let _ = text.take_all(&TAIL, |_| Some(()));
    static WITH: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*(?:with|the task|task)\b"));
    strip(text, &WITH);
    Parsed {
        target: Some(target(text)),
        ..Parsed::only(intent)
    }
}

fn update(text: &mut Text, lead: &str, ctx: &Ctx) -> Parsed {
    static RENAME: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"^(?:rename|retitle|change the (?:title|name) of|change|update)\b(.*?)\b(?:to|as|into)\s+(.+)$",
        )
    });
    static TITLE_OF: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:title|name)\b"));
    static OF: LazyLock<Regex> = LazyLock::new(|| {
        re(r"\b(?:the )?(?:title|name) of\b|\bthe title\b|\bits (?:title|name)\b")
    });
    static RENAME_VERB: LazyLock<Regex> =
        LazyLock::new(|| re(r"^(?:rename|retitle|change|update)\b"));
    static VERB: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"^(?:rename|retitle|change|move|push|postpone|reschedule|defer|delay|make|set|update|edit|modify|bump|prioriti[sz]e|mark|tag|untag|remind me about|remind me of)\b",
        )
    });
    static STOP: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"^(?:stop repeating|stop recurring|don't repeat|do not repeat|no longer repeat|make it not repeat)\b|\b(?:stop repeating|not repeat|no repeat|no recurrence|doesn't repeat|does not repeat|one-?off|one time only)\b",
        )
    });
    static ADD_TAG: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:add (?:the )?tags?|tag)\b"));
    static REMOVE_TAG: LazyLock<Regex> =
        LazyLock::new(|| re(r"^(?:remove (?:the )?tags?|untag|delete (?:the )?tags?)\b"));
    static CONNECT: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"\b(?:to|for|from|on|of|with|as|the priority|priority|its|due date|due|date|deadline|repeat|recur|recurring|repeating|the)\b",
        )
    });
    let mut changes = Changes::default();
    let now = ctx.now;

    // "rename task 2 to call grandma": the new title is everything after "to".
    if lead.starts_with("rename")
        || (lead.starts_with("change") || lead.starts_with("update")) && TITLE_OF.is_match(lead)
    {
        // "rename task 2 to 'renew passport'": the quoted words are the new title.
        if let Some(quoted) = &ctx.quoted {
            static TO_END: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:to|as|into)\s*$"));
            strip(text, &RENAME_VERB);
            let _ = text.take(&TO_END, |_| Some(()));
            let mut named = Text::new(&text.rest());
            let _ = named.take(&OF, |_| Some(()));
            changes.title = Some(quoted.clone());
            return Parsed {
                target: Some(target(&mut named)),
                changes: Some(changes),
                ..Parsed::only(Intent::UpdateTask)
            };
        }
        let original = text.original().to_owned();
        let work = text.work().to_owned();
        if let Some(c) = RENAME.captures(work.trim_start()) {
            let off = work.len() - work.trim_start().len();
            if let (Some(who), Some(new)) = (c.get(1), c.get(2)) {
                let new_title = title(original[off + new.start()..off + new.end()].trim());
                let mut named = Text::new(&original[off + who.start()..off + who.end()]);
                let _ = named.take(&OF, |_| Some(()));
                changes.title = Some(new_title);
                return Parsed {
                    target: Some(target(&mut named)),
                    changes: Some(changes),
                    ..Parsed::only(Intent::UpdateTask)
                };
            }
        }
    }
    if STOP.is_match(lead) {
        let _ = text.take(&STOP, |_| Some(()));
        changes.recurrence = Some(None);
    } else if REMOVE_TAG.is_match(lead) {
        strip(text, &REMOVE_TAG);
        text.reading("tags");
        changes.remove_tags = tags_or_word(text);
        text.reading("command");
    } else if ADD_TAG.is_match(lead) {
        strip(text, &ADD_TAG);
        text.reading("tags");
        changes.add_tags = tags_or_word(text);
        text.reading("command");
    } else if REMINDER_FOR.is_match(lead) {
        strip(text, &REMINDER_FOR);
    } else {
        strip(text, &VERB);
    }
    text.reading("recurrence");
    if let Some(r) = recur::take(text, now) {
        changes.recurrence = Some(Some(r.rrule()));
        if r.completion {
            changes.recurrence_anchor = Some("completion");
        }
    }
    text.reading("reminders");
    changes.reminders_before_minutes = reminders(text);
    // "remind me about it tomorrow at 9am": a reminder when it is due.
    let remind_lead = lead.starts_with("remind me") || REMINDER_FOR.is_match(lead);
    if remind_lead && changes.reminders_before_minutes.is_empty() {
        changes.reminders_before_minutes.push(0);
    }
    if changes.add_tags.is_empty() && changes.remove_tags.is_empty() {
        text.reading("tags");
        changes.add_tags = tags(text);
    }
    text.reading("priority");
    changes.priority = priority(text);
    if changes.priority.is_none() && lead.contains("priorit") {
        static TO_LEVEL: LazyLock<Regex> =
            LazyLock::new(|| re(r"\b(?:to|as|at) (urgent|high|medium|normal|low)\b"));
        changes.priority = text.take(&TO_LEVEL, |c| {
            Some(match &c[1] {
                "urgent" => "urgent",
                "high" => "high",
                "low" => "low",
                _ => "medium",
            })
        });
    }
    text.reading("due");
    let when = when::take(text, now);
    text.reading("command");
    let (due_at, due_date) = resolve_due(&when, None, ctx);
    if when.date.is_none() && when.at.is_none() {
        changes.time_only = when.time;
    }
    changes.due_at = due_at;
    changes.due_date = due_date;
    // What remains names the task, minus connectors ("to", "the priority of").
    let rest = text.rest();
    let mut named = Text::new(&rest);
    let _ = named.take_all(&CONNECT, |_| Some(()));
    Parsed {
        target: Some(target(&mut named)),
        changes: Some(changes),
        ..Parsed::only(Intent::UpdateTask)
    }
}

/// The tags a tag command names, after its verb: `#x` wherever said; the words after the
/// task when it is named by a pronoun or number ("tag it work", "tag #4 with travel and
/// home") or after "with"/"as" ("tag buy milk with groceries"); else the first word ("add
/// tag travel to #4"). Only the tags are taken: what names the task is left for [`target`].
fn tags_or_word(text: &mut Text) -> Vec<String> {
    let found = tags(text);
    if !found.is_empty() {
        return found;
    }
    const LIST: &str =
        r"([a-z0-9_-]{1,50}(?:(?:\s*,\s*|\s+and\s+|\s*&\s*|\s+)[a-z0-9_-]{1,50})*)[\s.!]*$";
    static AFTER_REF: LazyLock<Regex> = LazyLock::new(|| {
        re(&format!(
            r"^\s*(?:it|that|this|#\d{{1,9}}|(?:task|number|no\.?) ?#?\d{{1,9}})\s+(?:with\s+|as\s+)?{LIST}"
        ))
    });
    static AFTER_WITH: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"^{LIST}")));
    let work = text.work().to_owned();
    // After the last "with"/"as": "tag the meeting with bob as work" tags "work".
    let last_with = [" with ", " as "]
        .iter()
        .filter_map(|w| work.rfind(w).map(|i| i + w.len()))
        .max();
    let found = AFTER_REF
        .captures(&work)
        .and_then(|c| c.get(1))
        .map(|m| (m.start(), m.end()))
        .or_else(|| {
            let from = last_with?;
            let m = AFTER_WITH.captures(&work[from..])?.get(1)?;
            Some((from + m.start(), from + m.end()))
        });
    if let Some((start, end)) = found {
        let words = tag_words(&work[start..end]);
        text.blank(start, end);
        return words;
    }
    static WORD: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*([a-z0-9_-]{1,50})\b"));
    text.take(&WORD, |c| Some(vec![c[1].to_owned()]))
        .unwrap_or_default()
}

/// When finished tasks were finished: "yesterday", "today", "this week" (Monday through
/// today), "last week", "this month" (the 1st through today), "last month".
fn completed_when(text: &mut Text, today: NaiveDate) -> Option<DueRange> {
    use chrono::Datelike as _;
    static WHEN: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"\b(due |by )?(?:on |during |in )?(yesterday|today|this week|last week|this month|last month)\b",
        )
    });
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let first = today.with_day(1)?;
    let (from, to) = text.take(&WHEN, |c| {
        // "completed tasks due today" is about the due day.
        if c.get(1).is_some() {
            return None;
        }
        Some(match &c[2] {
            "yesterday" => (today - Duration::days(1), today - Duration::days(1)),
            "today" => (today, today),
            "this week" => (monday, today),
            "last week" => (monday - Duration::days(7), monday - Duration::days(1)),
            "this month" => (first, today),
            _ => (
                first.checked_sub_months(chrono::Months::new(1))?,
                first - Duration::days(1),
            ),
        })
    })?;
    Some(DueRange {
        from: from.to_string(),
        to: to.to_string(),
    })
}

fn list(text: &mut Text, lead: &str, ctx: &Ctx) -> Parsed {
    static COMPLETED: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"\b(?:completed|complete|done|finished|closed|checked off|have i (?:completed|done|finished)|did i (?:complete|finish|do|get done))\b",
        )
    });
    static ALL: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:all|every|everything|entire)\b"));
    static PENDING: LazyLock<Regex> = LazyLock::new(|| {
        re(r"\b(?:pending|open|remaining|left|incomplete|unfinished|outstanding|to do|todo)\b")
    });
    static OVERDUE: LazyLock<Regex> =
        LazyLock::new(|| re(r"\b(?:overdue|late|past due|missed|behind)\b"));
    static SEARCH: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"^(?:search(?: for)?|find|look for|look up|lookup)\b\s*(?:tasks?|todos?)?\s*(?:about|for|with|containing|matching|called|named|mentioning)?\s*(.*)$|\b(?:about|containing|matching|mentioning|called|named|with the words?|that (?:mention|contain|say))\s+(.+)$",
        )
    });
    let mut filter = Filter::default();
    text.reading("filter");
    if let Some(q) = text.take(&SEARCH, |c| {
        let q = c
            .get(1)
            .or(c.get(2))?
            .as_str()
            .trim()
            .trim_end_matches(['?', '.', '!'])
            .trim()
            .to_owned();
        (!q.is_empty()).then_some(q)
    }) {
        filter.query = Some(query_words(&q));
    }
    if text.take(&OVERDUE, |_| Some(())).is_some() {
        filter.overdue = Some(true);
    }
    if COMPLETED.is_match(text.work()) && !lead.starts_with("what's due") {
        filter.status = Some("completed");
        filter.completed = completed_when(text, ctx.now.date());
    } else if ALL.is_match(text.work()) {
        filter.status = Some("all");
    } else if PENDING.is_match(text.work()) {
        filter.status = Some("pending");
    }
    static NEXT_N: LazyLock<Regex> = LazyLock::new(|| {
        re(&format!(
            r"\b(?:the )?(?:next|first|top) ({NUMBER}|few) (?:things|tasks|todos|to-dos|items|ones)?\b"
        ))
    });
    // "what's overdue at work?": a place said of a list is its tag.
    static AT_PLACE: LazyLock<Regex> = LazyLock::new(|| {
        re(r"\b(?:at|for|from|in) (?:the )?(work|home|school|office|uni|college|church|gym)\b")
    });
    // "show urgent and high": levels said bare, after a list verb.
    static LEVEL: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"\b(urgent|high|medium|low|important)(?:[- ](?:priority|prio))?(?: ones| tasks| items)?\b",
        )
    });
    if let Some(n) = text.take(&NEXT_N, |c| match &c[1] {
        "few" | "a few" => Some(3),
        n => number(n).filter(|n| (1..=100).contains(n)),
    }) {
        filter.limit = Some(n);
    }
    // "show work tasks": a word that is no status, level or time, before "tasks", is a tag.
    static WORD_TASKS: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"^(?:show|list|display|see|get|give me|view)(?: me)?(?: all)?(?: my| the)? ([a-z0-9_-]{1,30}) (?:tasks|todos|to-dos|items)\b",
        )
    });
    filter.tags = tags(text);
    if filter.tags.is_empty()
        && let Some(place) = text.take(&AT_PLACE, |c| Some(c[1].to_owned()))
    {
        filter.tags.push(place);
    }
    if filter.tags.is_empty()
        && let Some(word) = WORD_TASKS.captures(lead).map(|c| c[1].to_owned())
        && !matches!(
            word.as_str(),
            "all"
                | "my"
                | "the"
                | "pending"
                | "open"
                | "completed"
                | "complete"
                | "done"
                | "finished"
                | "overdue"
                | "late"
                | "urgent"
                | "high"
                | "medium"
                | "low"
                | "important"
                | "recurring"
                | "repeating"
                | "upcoming"
                | "remaining"
                | "new"
                | "old"
                | "other"
                | "current"
                | "active"
                | "today's"
                | "tomorrow's"
                | "next"
                | "these"
                | "those"
                | "some"
                | "any"
                | "more"
                | "priority"
        )
    {
        static TAG_WORD: LazyLock<Regex> =
            LazyLock::new(|| re(r"\b([a-z0-9_-]{1,30}) (?:tasks|todos|to-dos|items)\b"));
        let _ = text.take(&TAG_WORD, |c| (c[1] == word).then_some(()));
        filter.tags.push(word);
    }
    let mut levels: Vec<&'static str> = Vec::new();
    while let Some(p) = priority(text) {
        levels.push(p);
    }
    while let Some(p) = text.take(&LEVEL, |c| {
        Some(match &c[1] {
            "urgent" => "urgent",
            "high" | "important" => "high",
            "medium" => "medium",
            _ => "low",
        })
    }) {
        levels.push(p);
    }
    levels.sort_by_key(|l| {
        ["urgent", "high", "medium", "low"]
            .iter()
            .position(|x| x == l)
    });
    levels.dedup();
    if !levels.is_empty() {
        filter.priority = Some(levels.join(","));
    }
    let when = when::take(text, ctx.now);
    if let Some(d) = when.date {
        let to = when.range_end.unwrap_or(d);
        filter.due = Some(DueRange {
            from: d.to_string(),
            to: to.to_string(),
        });
    }
    if filter.status == Some("pending") {
        filter.status = None;
    }
    Parsed {
        filter: Some(filter),
        ..Parsed::only(Intent::ListTasks)
    }
}

/// `--now` of `taskflow nlu parse`: local wall-clock time, or RFC 3339 with an offset
/// (converted to `tz`).
pub fn parse_now(s: &str, tz: Tz) -> Option<NaiveDateTime> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&tz).naive_local());
    }
    [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .map(|d| d.and_time(NaiveTime::MIN))
    })
}

#[cfg(test)]
mod tests {
    use super::{SmallTalk, small_talk};

    #[test]
    fn the_tags_of_a_tag_command_come_after_the_last_with_or_as() {
        let now = chrono::NaiveDate::from_ymd_opt(2026, 11, 22)
            .and_then(|d| d.and_hms_opt(10, 0, 0))
            .expect("a valid moment");
        let parsed = super::parse("tag the meeting with bob as work", now, chrono_tz::UTC);
        let changes = parsed.changes.expect("an update");
        assert_eq!(changes.add_tags, ["work"]);
        assert!(
            matches!(parsed.target, Some(super::Target::Query(q)) if q.contains("bob")),
            "the task is named by what comes before"
        );
    }

    #[test]
    fn a_slip_of_one_letter_is_read_as_the_command_and_words_of_their_own_are_not() {
        for (said, read) in [
            ("lsit my tasks", "list my tasks"),
            ("please shwo my tasks", "please show my tasks"),
            ("Delte #4", "delete #4"),
            ("compleete task 2", "complete task 2"),
            ("reshcedule it", "reschedule it"),
            // Words of their own, and short words one letter away, stay as said.
            ("dad's birthday", "dad's birthday"),
            ("park the car", "park the car"),
            ("fund the account", "fund the account"),
            ("crate the dog", "crate the dog"),
            ("rewind the tape", "rewind the tape"),
            ("mow the lawn", "mow the lawn"),
            ("", ""),
        ] {
            assert_eq!(
                super::with_command_spelled(said.to_owned()),
                read,
                "{said:?}"
            );
        }
    }

    #[test]
    fn greetings_and_thanks_are_small_talk_and_requests_are_not() {
        for (said, expect) in [
            ("hi", Some(SmallTalk::Greeting)),
            ("Hello there!", Some(SmallTalk::Greeting)),
            ("good morning", Some(SmallTalk::Greeting)),
            ("thanks!", Some(SmallTalk::Thanks)),
            ("ok, thank you very much.", Some(SmallTalk::Thanks)),
            ("cheers", Some(SmallTalk::Thanks)),
            ("hi, add buy milk", None),
            ("thanks for adding milk, now show my tasks", None),
            ("", None),
        ] {
            assert_eq!(small_talk(said), expect, "{said:?}");
        }
    }
}
